# Copyright (c) mmscalable contributors. All rights reserved.
"""The classification models of mmscalable's model index in mmpretrain's
model hub, so that ``mmpretrain.list_models('*scalablevit*')`` lists them
and ``mmpretrain.get_model(NAME, pretrained=PATH)`` builds one by name.

Only the entries whose results are image classification are added: the
hub builds mmpretrain models, and the detection and segmentation configs
are mmdet's and mmseg's.
"""
import importlib.util
import os.path as osp
from typing import List, Optional

PACKAGE_ROOT = osp.dirname(osp.abspath(__file__))


def model_index_path() -> Optional[str]:
    """``model-index.yml`` of an installed package (``mmscalable/.mim``)
    or of the checkout the package runs from; None if neither exists."""
    for root in (osp.join(PACKAGE_ROOT, '.mim'), osp.dirname(PACKAGE_ROOT)):
        path = osp.join(root, 'model-index.yml')
        if osp.isfile(path):
            return path
    return None


def register_classification_models() -> List[str]:
    """Add the image-classification entries of the model index to
    mmpretrain's ``ModelHub`` (configs by absolute path); a name already
    there is left as it is. Returns the names added (none without
    mmpretrain or a model index)."""
    path = model_index_path()
    if path is None or importlib.util.find_spec('mmpretrain') is None:
        return []
    from mmpretrain.apis.model import ModelHub
    from modelindex.load_model_index import load

    # The configs name `mmscalable.<Type>`: the scope's registry must exist
    # for mmengine to import mmscalable.models when one is built.
    import mmscalable.registry  # noqa: F401
    index = load(path)
    index.build_models_with_collections()
    added = []
    for model in index.models:
        name = model.name.lower()
        tasks = {result.task for result in model.results or []}
        if 'Image Classification' not in tasks or ModelHub.has(name):
            continue
        model.config = osp.join(osp.dirname(path), model.config)
        ModelHub._models_dict[name] = model
        added.append(name)
    return added
