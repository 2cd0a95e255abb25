# Copyright (c) mmscalable contributors. All rights reserved.
"""Argument and input checks shared by the backbones."""
from typing import Dict, List, Optional, Sequence, Union

from torch import Tensor


def parse_out_indices(out_indices: Union[Sequence[int], int],
                      num_stages: int) -> List[int]:
    """Sorted, non-negative stage indices; negative ones count from the end.

    Raises:
        ValueError: If an index is not a stage index.
    """
    if isinstance(out_indices, int):
        out_indices = [out_indices]
    parsed = []
    for index in out_indices:
        if not isinstance(index, int) or not -num_stages <= index < num_stages:
            raise ValueError(f'out_indices must be stage indices in '
                             f'[0, {num_stages}), got {out_indices}')
        parsed.append(index % num_stages)
    return sorted(set(parsed))


def check_frozen_stages(frozen_stages: int, num_stages: int) -> int:
    if not -1 <= frozen_stages <= num_stages:
        raise ValueError(f'frozen_stages must be in [-1, {num_stages}], '
                         f'got {frozen_stages}')
    return frozen_stages


def check_image_input(x: Tensor, in_channels: int, min_size: int,
                      name: str) -> None:
    """Check that ``x`` is a (B, in_channels, H, W) batch of images.

    Raises:
        ValueError: Naming the problem: not 4-D, other channels, or a side
            shorter than ``min_size`` (the backbone's total stride).
    """
    if x.dim() != 4:
        raise ValueError(f'{name} expects images of shape (B, C, H, W), got '
                         f'a tensor of shape {tuple(x.shape)}')
    if x.shape[1] != in_channels:
        raise ValueError(f'{name} was built for {in_channels} input '
                         f'channels, got {x.shape[1]} (input shape '
                         f'{tuple(x.shape)})')
    if min(x.shape[2:]) < min_size:
        raise ValueError(
            f'Input of {x.shape[2]}x{x.shape[3]} is smaller than the '
            f"backbone's total stride {min_size}; pad or resize images to "
            f'at least {min_size}x{min_size}')


def parse_arch(arch: Union[str, dict], arch_zoo: Dict[str, dict],
               required: Sequence[str], num_stages: Optional[int],
               name: str) -> dict:
    """Resolve ``arch``: a key of ``arch_zoo`` (any case) or a custom dict.

    Raises:
        ValueError: For an unknown name, a dict without the ``required``
            keys, or (unless ``num_stages`` is None: single values) a key
            without one value per stage.
    """
    required = sorted(required)
    if isinstance(arch, str):
        key = arch.lower()
        if key not in arch_zoo:
            raise ValueError(
                f'Unknown {name} arch {arch!r}; choose from '
                f'{sorted(set(arch_zoo))} or pass a dict with keys {required}')
        return arch_zoo[key]
    if not isinstance(arch, dict) or not set(required) <= set(arch):
        raise ValueError(f'A custom {name} arch must be a dict with keys '
                         f'{required}, got {arch!r}')
    for key in required if num_stages is not None else ():
        if len(arch[key]) != num_stages:
            raise ValueError(f'arch[{key!r}] needs {num_stages} values, got '
                             f'{list(arch[key])}')
    return arch
