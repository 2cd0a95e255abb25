# Copyright (c) mmscalable contributors. All rights reserved.
"""The backbone families and the conversion of their official checkpoints.

:data:`FAMILIES` is the one table that names each family's backbone class,
its model names and how its official checkpoints convert. The benchmark
takes its model list from it (one model per distinct variant of the class's
``arch_zoo``), and ``tools/model_converters/official2mmscalable.py`` its
families and options.
"""
import dataclasses
import os
import os.path as osp
import pickle
from typing import Callable, Dict, List, Mapping, Optional

import torch
from torch import Tensor

from mmscalable.compat import safe_torch_load
from .key_rules import (groupmixformer_official_to_mmcls,
                        is_official_groupmixformer, is_official_refiner,
                        is_official_scalablevit, refiner_official_to_mmcls,
                        scalablevit_official_to_mmcls)
from .pretrained import EMA_CONTAINERS, weights_container


def convert_official_checkpoint(
        src: str,
        dst: str,
        family: str,
        is_official: Callable[[Mapping[str, Tensor]], bool],
        to_mmcls: Callable[[Mapping[str, Tensor]], Dict[str, Tensor]],
        marker: str,
        converter: str,
        ema: Optional[bool] = None,
        where_to_get: str = '') -> Dict[str, Tensor]:
    """Convert the official checkpoint ``src`` of ``family`` into ``dst``.

    Args:
        src (str): Official checkpoint (``{'model': state_dict}`` or a bare
            state dict).
        dst (str): Output path; its folder is created.
        family (str): Model name for messages.
        is_official (Callable): Tells whether weights are official.
        to_mmcls (Callable): Renames official keys to classifier keys.
        marker (str): The key pattern official checkpoints have, for the
            error message.
        converter (str): Name recorded in the output's ``meta``.
        ema (bool, optional): Which weights to take: None, the EMA weights
            (``state_dict_ema``, ``model_ema``) where the checkpoint has
            them, else the trained ones (``state_dict``, ``model``); True,
            the EMA weights, which the checkpoint must have; False, the
            trained weights. Defaults to None.
        where_to_get (str): Where the official checkpoints are, for the
            errors about a missing or unreadable ``src``. Defaults to ''.

    Returns:
        dict: The converted weights.

    Raises:
        FileNotFoundError: If ``src`` does not exist.
        ValueError: If ``src`` is not a PyTorch checkpoint, not an official
            checkpoint of ``family``, or lacks the weights ``ema`` asks for.
    """
    hint = f' Official {family} checkpoints: {where_to_get}.' \
        if where_to_get else ''
    if not osp.isfile(src):
        raise FileNotFoundError(
            f'No checkpoint at {src} (relative paths are read from '
            f'{os.getcwd()}).{hint}')
    try:
        checkpoint = safe_torch_load(src, map_location='cpu')
    except (pickle.UnpicklingError, RuntimeError, EOFError, KeyError,
            ValueError) as error:
        raise ValueError(
            f'{src} is not a PyTorch checkpoint that loads with weights only '
            f'({type(error).__name__}: {str(error)[:200]}).{hint}') from error
    if not isinstance(checkpoint, Mapping):
        raise ValueError(f'{src} holds a {type(checkpoint).__name__}, not a '
                         f'state dict.{hint}')
    container = weights_container(checkpoint, src, ema is not False)
    if ema and container not in EMA_CONTAINERS:
        keys = list(checkpoint)
        raise ValueError(f'{src} has no EMA weights (under any of '
                         f'{EMA_CONTAINERS}; its keys: {keys[:8]})')
    state_dict = dict(checkpoint if container is None else checkpoint[container])
    if not is_official(state_dict):
        raise ValueError(
            f'{src} is not an official {family} checkpoint: it has no '
            f'`{marker}` keys (first keys: {list(state_dict)[:5]})')
    converted = to_mmcls(state_dict)
    os.makedirs(osp.dirname(osp.abspath(dst)), exist_ok=True)
    meta = dict(converted_from=osp.basename(src), converter=converter)
    if container in EMA_CONTAINERS:
        meta['container'] = container
    torch.save(dict(state_dict=converted, meta=meta), dst)
    return converted


def canonical_archs(arch_zoo: Mapping[str, dict]) -> List[str]:
    """The first name of each distinct variant of an ``arch_zoo``.

    ``arch_zoo`` maps aliases (``'s'``, ``'small'``) to the same settings;
    this keeps one name per variant, in the zoo's order.
    """
    names, seen = [], []
    for name, settings in arch_zoo.items():
        if not any(settings == other for other in seen):
            names.append(name)
            seen.append(settings)
    return names


@dataclasses.dataclass(frozen=True)
class BackboneFamily:
    """A backbone family: its class, model names and official checkpoints.

    Args:
        name (str): The family's name on the command line and its config
            folder (``configs/<name>/``).
        title (str): The name in messages (``'ScalableViT'``).
        backbone (str): The class's name in the ``mmscalable`` MODELS
            registry.
        model_prefix (str): Models are named ``<model_prefix>-<arch>``, as
            in the config file names (``refiner-vit-s``).
        repository (str): The official repository (``owner/name``).
        is_official (Callable): Tells official weights from others.
        official_to_mmcls (Callable): Renames official keys to the keys of
            an mmpretrain classifier (``backbone.*``, ``head.*``).
        marker (str): The key pattern official checkpoints have (named in
            the error for another checkpoint).
        ema_key (str, optional): Where the official checkpoints keep their
            EMA weights; None when they carry none. Defaults to None.
        checkpoints_folder (str): The repository folder whose README links
            the checkpoints; '' for the top README. Defaults to ''.
    """
    name: str
    title: str
    backbone: str
    model_prefix: str
    repository: str
    is_official: Callable[[Mapping[str, Tensor]], bool]
    official_to_mmcls: Callable[[Mapping[str, Tensor]], Dict[str, Tensor]]
    marker: str
    ema_key: Optional[str] = None
    checkpoints_folder: str = ''

    @property
    def converter(self) -> str:
        """The converter's name recorded in converted checkpoints."""
        return f'{self.name}2mmscalable'

    @property
    def backbone_class(self) -> type:
        """The registered backbone class."""
        import mmscalable.models  # noqa: F401  (registers the backbones)
        from mmscalable.registry import MODELS
        cls = MODELS.get(self.backbone)
        if cls is None:
            raise KeyError(f'{self.backbone} is not registered in the '
                           'mmscalable MODELS registry')
        return cls

    @property
    def archs(self) -> List[str]:
        """One name per variant of the backbone's ``arch_zoo``."""
        return canonical_archs(self.backbone_class.arch_zoo)

    @property
    def model_names(self) -> List[str]:
        """``<model_prefix>-<arch>`` for every variant."""
        return [f'{self.model_prefix}-{arch}' for arch in self.archs]

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

    @property
    def checkpoint_page(self) -> str:
        """The official repository's page that links its checkpoints."""
        page = f'https://github.com/{self.repository}'
        if self.checkpoints_folder:
            page += f'/tree/main/{self.checkpoints_folder}'
        return page


FAMILIES: Dict[str, BackboneFamily] = {
    family.name: family
    for family in (
        BackboneFamily(
            name='scalablevit',
            title='ScalableViT',
            backbone='ScalableViT',
            model_prefix='scalablevit',
            repository='Yangr116/ScalableViT',
            is_official=is_official_scalablevit,
            official_to_mmcls=scalablevit_official_to_mmcls,
            marker='patch_embeds.*',
            checkpoints_folder='image_classification'),
        BackboneFamily(
            name='groupmixformer',
            title='GroupMixFormer',
            backbone='GroupMixFormer',
            model_prefix='groupmixformer',
            repository='AILab-CVC/GroupMixFormer',
            is_official=is_official_groupmixformer,
            official_to_mmcls=groupmixformer_official_to_mmcls,
            marker='conv_stem.*'),
        # Saved by timm's CheckpointSaver: the EMA under `state_dict_ema`.
        BackboneFamily(
            name='refiner',
            title='Refiner-ViT',
            backbone='RefinerViT',
            model_prefix='refiner-vit',
            repository='zhoudaquan/Refiner_ViT',
            is_official=is_official_refiner,
            official_to_mmcls=refiner_official_to_mmcls,
            marker='patch_embed.conv1.*',
            ema_key='state_dict_ema'),
    )
}


def get_family(name: str) -> BackboneFamily:
    """The family called ``name``; the error lists the known ones."""
    if name not in FAMILIES:
        raise KeyError(f'unknown backbone family {name!r}; one of '
                       f'{list(FAMILIES)}')
    return FAMILIES[name]
