# Copyright (c) mmscalable contributors. All rights reserved.
"""The backbone families: one entry per family, the one place that names
what a family is.

Each :class:`BackboneFamily` names the backbone class and its attention,
how the official checkpoints convert and where they are published, the
small architecture of the tests and the demo, the model names of the
benchmark and the model hub, and the config folder. The converters, the
benchmark, the model hub, the engine's checks and the tests read
:data:`FAMILIES`; a new family is one more entry (see
``docs/add_backbone.md``), and :func:`register_family` adds one from
outside the package.
"""
import contextlib
import dataclasses
import os.path as osp
from typing import Callable, Dict, Iterator, List, Mapping, Optional

from torch import Tensor

from .checkpoint.key_rules import (groupmixformer_mmcls_to_official,
                                   groupmixformer_official_to_mmcls,
                                   is_official_groupmixformer,
                                   is_official_refiner,
                                   is_official_scalablevit,
                                   refiner_mmcls_to_official,
                                   refiner_official_to_mmcls,
                                   scalablevit_mmcls_to_official,
                                   scalablevit_official_to_mmcls)
from .checkpoint.official import canonical_archs, convert_official_checkpoint

StateDictMap = Callable[[Mapping[str, Tensor]], Dict[str, Tensor]]


@dataclasses.dataclass(frozen=True)
class BackboneFamily:
    """A backbone family and everything that names it.

    Args:
        name (str): The family's name on the command line.
        title (str): The name in messages (``'ScalableViT'``).
        backbone (str): The backbone class's name in the ``mmscalable``
            MODELS registry.
        attention (str): The registered name of the attention that makes
            the family (the one that counts FLOPs its own way and has a
            fast path).
        model_prefix (str): Models are named ``<model_prefix>-<arch>``, as
            in the config file names (``refiner-vit-s``); the model hub
            lists them as ``<model_prefix>-*``.
        repository (str): The official repository (``owner/name``).
        is_official (Callable): Tells official weights from others.
        official_to_mmcls (Callable): Renames official keys to the keys of
            an mmpretrain classifier (``backbone.*``, ``head.*``).
        mmcls_to_official (Callable): The reverse renaming.
        marker (str): The key pattern official checkpoints have (named in
            the error for another checkpoint).
        tiny_arch (dict): The smallest architecture that has every kind of
            block of the family: the tests' model.
        demo_arch (dict, optional): The architecture of the demo configs
            (``configs/demo/*_<name>-tiny_*``); None when the family has no
            demo. Defaults to None.
        ema_key (str, optional): Where the official checkpoints keep their
            EMA weights; None when they carry none. Defaults to None.
        checkpoints_folder (str): The repository folder whose README links
            the checkpoints; '' for the top README. Defaults to ''.
        config_folder (str, optional): The family's configs: a path
            relative to the project (or the installed package's ``.mim``)
            or an absolute one. Defaults to ``configs/<name>``.
    """
    name: str
    title: str
    backbone: str
    attention: str
    model_prefix: str
    repository: str
    is_official: Callable[[Mapping[str, Tensor]], bool]
    official_to_mmcls: StateDictMap
    mmcls_to_official: StateDictMap
    marker: str
    tiny_arch: dict
    demo_arch: Optional[dict] = None
    ema_key: Optional[str] = None
    checkpoints_folder: str = ''
    config_folder: Optional[str] = None

    @property
    def converter(self) -> str:
        """The converter's name recorded in converted checkpoints."""
        return f'{self.name}2mmscalable'

    @property
    def configs(self) -> str:
        """The config folder (see ``config_folder``)."""
        return self.config_folder or osp.join('configs', self.name)

    @property
    def hub_pattern(self) -> str:
        """The pattern of ``mmpretrain.list_models`` that lists the
        family's classifiers."""
        return f'{self.model_prefix}-*'

    @property
    def backbone_class(self) -> type:
        """The registered backbone class."""
        return registered_class(self.backbone)

    @property
    def attention_class(self) -> type:
        """The registered attention class."""
        return registered_class(self.attention)

    @property
    def archs(self) -> List[str]:
        """One name per variant of the backbone's ``arch_zoo``."""
        return canonical_archs(self.backbone_class.arch_zoo)

    @property
    def model_names(self) -> List[str]:
        """``<model_prefix>-<arch>`` for every variant."""
        return [f'{self.model_prefix}-{arch}' for arch in self.archs]

    @property
    def checkpoint_page(self) -> str:
        """The official repository's page that links its checkpoints."""
        page = f'https://github.com/{self.repository}'
        if self.checkpoints_folder:
            page += f'/tree/main/{self.checkpoints_folder}'
        return page

    def convert(self, src: str, dst: str,
                ema: Optional[bool] = None) -> Dict[str, Tensor]:
        """Convert the official checkpoint ``src`` into ``dst``.

        Args:
            src (str): Official checkpoint.
            dst (str): Output path: a checkpoint of the whole mmpretrain
                classifier; its folder is created.
            ema (bool, optional): None converts the EMA weights where the
                checkpoint has them (the official figures are the EMA
                model's), else the trained ones; True requires the EMA
                weights, False takes the trained ones. Defaults to None.

        Returns:
            dict: The converted weights.
        """
        if ema and self.ema_key is None:
            raise ValueError(f'official {self.title} checkpoints carry no '
                             'EMA weights')
        return convert_official_checkpoint(
            src,
            dst,
            family=self.title,
            is_official=self.is_official,
            to_mmcls=self.official_to_mmcls,
            marker=self.marker,
            converter=self.converter,
            ema=ema,
            where_to_get=self.checkpoint_page)


def registered_class(name: str) -> type:
    """The class registered as ``name`` in the ``mmscalable`` MODELS
    registry; the error names it."""
    import mmscalable.models  # noqa: F401  (registers the models)
    from mmscalable.registry import MODELS
    cls = MODELS.get(name)
    if cls is None:
        raise KeyError(f'{name} is not registered in the mmscalable MODELS '
                       'registry')
    return cls


FAMILIES: Dict[str, BackboneFamily] = {}


def register_family(family: BackboneFamily) -> BackboneFamily:
    """Add ``family`` to :data:`FAMILIES`; its name must be new."""
    if family.name in FAMILIES:
        raise KeyError(f'a backbone family named {family.name!r} exists')
    FAMILIES[family.name] = family
    return family


@contextlib.contextmanager
def registered_family(family: BackboneFamily) -> Iterator[BackboneFamily]:
    """:func:`register_family` for the duration of a ``with`` block."""
    register_family(family)
    try:
        yield family
    finally:
        FAMILIES.pop(family.name, None)


def get_family(name: str) -> BackboneFamily:
    """The family called ``name``; the error lists the known ones."""
    if name not in FAMILIES:
        raise KeyError(f'unknown backbone family {name!r}; one of '
                       f'{list(FAMILIES)}')
    return FAMILIES[name]


def family_of_backbone(backbone_type: str) -> Optional[BackboneFamily]:
    """The family whose backbone is registered as ``backbone_type``
    (``'RefinerViT'`` or ``'mmscalable.RefinerViT'``); None for another
    backbone."""
    name = backbone_type.split('.')[-1]
    return next((f for f in FAMILIES.values() if f.backbone == name), None)


register_family(
    BackboneFamily(
        name='scalablevit',
        title='ScalableViT',
        backbone='ScalableViT',
        attention='ScalableSelfAttention',
        model_prefix='scalablevit',
        repository='Yangr116/ScalableViT',
        is_official=is_official_scalablevit,
        official_to_mmcls=scalablevit_official_to_mmcls,
        mmcls_to_official=scalablevit_mmcls_to_official,
        marker='patch_embeds.*',
        # Two blocks in the first stage: IWSA, then SSA.
        tiny_arch=dict(
            embed_dims=[16, 32, 48, 64],
            depths=[2, 1, 1, 1],
            num_heads=[1, 2, 3, 4],
            channel_ratios=[1.25, 1, 1, 1]),
        demo_arch=dict(
            embed_dims=[32, 64, 128, 256],
            depths=[2, 2, 2, 2],
            num_heads=[1, 2, 4, 8],
            channel_ratios=[1, 1, 1, 1]),
        checkpoints_folder='image_classification'))
register_family(
    BackboneFamily(
        name='groupmixformer',
        title='GroupMixFormer',
        backbone='GroupMixFormer',
        attention='GroupMixAttention',
        model_prefix='groupmixformer',
        repository='AILab-CVC/GroupMixFormer',
        is_official=is_official_groupmixformer,
        official_to_mmcls=groupmixformer_official_to_mmcls,
        mmcls_to_official=groupmixformer_mmcls_to_official,
        marker='conv_stem.*',
        tiny_arch=dict(
            embed_dims=[40, 40, 80, 80], depths=[1, 1, 1, 1],
            mlp_ratios=[2] * 4),
        demo_arch=dict(
            embed_dims=[40, 80, 120, 160], depths=[1, 1, 2, 1],
            mlp_ratios=[4] * 4)))
# Saved by timm's CheckpointSaver: the EMA under `state_dict_ema`.
register_family(
    BackboneFamily(
        name='refiner',
        title='Refiner-ViT',
        backbone='RefinerViT',
        attention='RefinedAttention',
        model_prefix='refiner-vit',
        repository='zhoudaquan/Refiner_ViT',
        is_official=is_official_refiner,
        official_to_mmcls=refiner_official_to_mmcls,
        mmcls_to_official=refiner_mmcls_to_official,
        marker='patch_embed.conv1.*',
        # Four blocks: two of each kind (plain and refiner).
        tiny_arch=dict(embed_dims=48, depth=4, num_heads=4),
        ema_key='state_dict_ema'))
