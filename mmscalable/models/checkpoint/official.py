# Copyright (c) mmscalable contributors. All rights reserved.
"""Conversion of official checkpoints into mmpretrain classifier checkpoints,
shared by the scripts in ``tools/model_converters``."""
import argparse
import os
import os.path as osp
from typing import Callable, Dict, Mapping, Optional, Sequence

import torch
from torch import Tensor

from mmscalable.compat import safe_torch_load
from .pretrained import unwrap_state_dict


def convert_official_checkpoint(
        src: str,
        dst: str,
        family: str,
        is_official: Callable[[Mapping[str, Tensor]], bool],
        to_mmcls: Callable[[Mapping[str, Tensor]], Dict[str, Tensor]],
        marker: str,
        converter: str,
        container: Optional[str] = None) -> Dict[str, Tensor]:
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
        container (str, optional): Take the weights under this key of the
            checkpoint (e.g. ``'state_dict_ema'``) instead of the first of
            ``state_dict``, ``model``, ``state_dict_ema``, ``model_ema`` that
            it has. Defaults to None.

    Returns:
        dict: The converted weights.

    Raises:
        ValueError: If ``src`` is not an official checkpoint of ``family``,
            or has no weights under ``container``.
    """
    checkpoint = safe_torch_load(src, map_location='cpu')
    if container is not None:
        if not (isinstance(checkpoint, Mapping)
                and isinstance(checkpoint.get(container), Mapping)):
            keys = list(checkpoint) if isinstance(checkpoint, Mapping) else []
            raise ValueError(f'{src} has no weights under `{container}` '
                             f'(its keys: {keys[:8]})')
        checkpoint = checkpoint[container]
    state_dict = unwrap_state_dict(checkpoint, src)
    if not is_official(state_dict):
        raise ValueError(
            f'{src} is not an official {family} checkpoint: it has no '
            f'`{marker}` keys (first keys: {list(state_dict)[:5]})')
    converted = to_mmcls(state_dict)
    os.makedirs(osp.dirname(osp.abspath(dst)), exist_ok=True)
    meta = dict(converted_from=osp.basename(src), converter=converter)
    if container is not None:
        meta['container'] = container
    torch.save(dict(state_dict=converted, meta=meta), dst)
    return converted


def run_converter_cli(family: str,
                      convert: Callable[[str, str], dict],
                      argv: Optional[Sequence[str]] = None) -> None:
    """Command line of a converter script: ``SRC DST``."""
    parser = argparse.ArgumentParser(
        description=f'Convert an official {family} checkpoint to the keys of '
        'an mmpretrain classifier with a mmscalable backbone.')
    parser.add_argument('src', help='official checkpoint path')
    parser.add_argument('dst', help='output path')
    args = parser.parse_args(argv)
    converted = convert(args.src, args.dst)
    print(f'Converted {len(converted)} tensors from {args.src} to {args.dst}')
