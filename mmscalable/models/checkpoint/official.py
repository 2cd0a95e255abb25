# Copyright (c) mmscalable contributors. All rights reserved.
"""The conversion of an official checkpoint file, whatever its family.

Each family's key rules and checkpoint page are in
:data:`mmscalable.models.families.FAMILIES`, whose entries call
:func:`convert_official_checkpoint`.
"""
import os
import os.path as osp
import pickle
from typing import Callable, Dict, List, Mapping, Optional

import torch
from torch import Tensor

from mmscalable.compat import safe_torch_load
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
