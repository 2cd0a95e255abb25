# Copyright (c) mmscalable contributors. All rights reserved.
"""The classification models of mmscalable's model index in mmpretrain's
model hub, so that ``mmpretrain.list_models('*scalablevit*')`` lists them
and ``mmpretrain.get_model(NAME, pretrained=PATH)`` builds one by name.

Only the entries whose results are image classification are added: the
hub builds mmpretrain models, and the detection and segmentation configs
are mmdet's and mmseg's.

mmscalable publishes no weights of its own: the weights of a classifier are
the official checkpoint, converted with
``tools/model_converters/official2mmscalable.py``. The metafiles link the
official files as ``Converted From: Weights`` (where the official repository
publishes one) and the repository as ``Converted From: Code``, as
mmpretrain's metafiles do for converted models, and leave ``Weights``
empty. mmpretrain's ``get_model(NAME, pretrained=True)`` reads an entry's
``weights``; for these entries that raises :class:`NoPublishedWeightsError`,
which says where the official checkpoint is and how to convert and load
it, where mmpretrain would only warn and return random weights.
"""
import importlib.util
import os.path as osp
import re
import sys
from functools import lru_cache
from typing import Callable, Dict, List, Optional

PACKAGE_ROOT = osp.dirname(osp.abspath(__file__))
CONVERTER = osp.join('tools', 'model_converters', 'official2mmscalable.py')


class NoPublishedWeightsError(ValueError):
    """``pretrained=True`` for a model whose weights mmscalable does not
    publish: the message says how to get them."""


def model_index_path() -> Optional[str]:
    """``model-index.yml`` of an installed package (``mmscalable/.mim``)
    or of the checkout the package runs from; None if neither exists."""
    for root in (osp.join(PACKAGE_ROOT, '.mim'), osp.dirname(PACKAGE_ROOT)):
        path = osp.join(root, 'model-index.yml')
        if osp.isfile(path):
            return path
    return None


def converted_checkpoint_path(name: str) -> str:
    """Where the docs keep the converted checkpoint of the classifier
    ``name``: ``checkpoints/<model>_in1k<suffix>.pth``, e.g.
    ``checkpoints/refiner-vit-l_in1k-448px.pth`` for
    ``refiner-vit-l_8xb64_in1k-448px``."""
    match = re.fullmatch(r'([^_]+)_.*_in1k(.*)', name)
    if match is None:
        return f'checkpoints/{name}.pth'
    return f'checkpoints/{match.group(1)}_in1k{match.group(2)}.pth'


def missing_weights_message(name: str,
                            family: str,
                            official: dict,
                            converter: str = CONVERTER,
                            released: Optional[List[str]] = None) -> str:
    """What to do instead of ``get_model(name, pretrained=True)``.

    Args:
        name (str): The model's name in the hub.
        family (str): Its family's name in
            :data:`mmscalable.models.families.FAMILIES`, which the
            converter takes (``scalablevit``, ``groupmixformer``,
            ``refiner``).
        official (dict): The entry's ``Converted From``: ``Code``, the
            official repository, and ``Weights``, the official checkpoint,
            where one is published.
        converter (str): The converter script's path. Defaults to
            ``tools/model_converters/official2mmscalable.py``.
        released (list[str], optional): The models of the family that have
            an official checkpoint, named where this one has none.
    """
    intro = f'{name}: mmscalable publishes no weights of its own'
    code = official.get('Code', 'the official repository')
    weights = official.get('Weights')
    if weights is None:
        others = (f' (it publishes those of {", ".join(released)})'
                  if released else '')
        return (f'{intro}, and the official repository ({code}) publishes '
                f'no checkpoint of this model{others}. Train it, or load '
                'weights of your own with '
                f"mmpretrain.get_model('{name}', pretrained=PATH).")
    dst = converted_checkpoint_path(name)
    return (f'{intro}; the weights of this model are the official '
            'checkpoint, converted (docs/model_zoo.md):\n'
            f'  1. download {weights} (linked from {code})\n'
            f'  2. python {converter} {family} DOWNLOADED_FILE {dst}\n'
            f"  3. mmpretrain.get_model('{name}', pretrained='{dst}')")


@lru_cache()
def _weights_entry_class():
    """A modelindex ``Model`` whose ``weights`` raise
    :class:`NoPublishedWeightsError` with its ``missing_weights`` message
    (defined on first use: modelindex comes with mmpretrain)."""
    from modelindex.models.Model import Model

    class ConvertedWeightsEntry(Model):
        """A model of the index whose weights are the official ones, to be
        converted (``missing_weights`` says how)."""

        missing_weights = ''

        @Model.weights.getter
        def weights(self):
            raise NoPublishedWeightsError(self.missing_weights)

    return ConvertedWeightsEntry


def register_classification_models() -> List[str]:
    """Add the image-classification entries of every family's metafile
    (:func:`family_classifiers`) to mmpretrain's ``ModelHub`` (configs by
    absolute path); a name already there is left as it is. Returns the
    names added (none without mmpretrain or a model index). A family
    registered later is added by calling it again."""
    path = model_index_path()
    if path is None or importlib.util.find_spec('mmpretrain') is None:
        return []
    from mmpretrain.apis.model import ModelHub

    # The configs name `mmscalable.<Type>`: the scope's registry must exist
    # for mmengine to import mmscalable.models when one is built.
    import mmscalable.registry  # noqa: F401
    root = osp.dirname(path)
    entry_class = _weights_entry_class()
    added = []
    for family, classifiers in family_classifiers(path).items():
        added += _add_to_hub(ModelHub, classifiers, family, root,
                             entry_class)
    return added


def family_classifiers(index_path: str) -> Dict[str, list]:
    """{family: its image-classification entries}: those of the model
    index, by config folder (``configs/<family>/``), and those of the
    metafile in the config folder of each family of
    :data:`mmscalable.models.families.FAMILIES` that the index lacks (a
    family registered from outside the package)."""
    from modelindex.load_model_index import load
    classifiers: Dict[str, list] = {}

    def add(index, family_of: Callable) -> None:
        index.build_models_with_collections()
        for model in index.models:
            if 'Image Classification' in {r.task
                                          for r in model.results or []}:
                classifiers.setdefault(family_of(model), []).append(model)

    add(load(index_path), lambda model: osp.basename(
        osp.dirname(model.config)))
    # The table is read only once the models are imported: importing them
    # here would make `import mmscalable` import every task library.
    families = sys.modules.get('mmscalable.models.families')
    root = osp.dirname(index_path)
    for family in getattr(families, 'FAMILIES', {}).values():
        metafile = osp.join(root, family.configs, 'metafile.yml')
        if family.name not in classifiers and osp.isfile(metafile):
            add(load(metafile), lambda model, name=family.name: name)
    return classifiers


def _add_to_hub(hub, classifiers: list, family: str, root: str,
                entry_class: type) -> List[str]:
    """Add ``family``'s ``classifiers`` that ``hub`` lacks; their names."""

    def official(model) -> dict:
        return model.data.get('Converted From') or {}

    added = []
    for model in classifiers:
        name = model.name.lower()
        if hub.has(name):
            continue
        if model.weights is None:
            released = [
                other.name for other in classifiers
                if official(other).get('Weights')
            ]
            message = missing_weights_message(name, family, official(model),
                                              osp.join(root, CONVERTER),
                                              released)
            model = entry_class.from_dict(
                dict(model.data), _filepath=model.filepath)
            model.missing_weights = message
        model.config = osp.join(root, model.config)
        hub._models_dict[name] = model
        added.append(name)
    return added
