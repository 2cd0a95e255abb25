"""A small model of each family, built fresh by each call (keyword
arguments override the defaults here), and what the contract tests in
``test_models/test_backbone_contract.py`` expect of it."""
import copy
from typing import (Callable, Iterator, List, Mapping, NamedTuple, Optional,
                    Tuple)

from mmscalable.models.families import FAMILIES

# What the tests pass besides a family's tiny arch.
TINY_KWARGS = {'refiner': dict(out_type='featmap', out_indices=(1, 3))}


def tiny_backbone(family: str, **kwargs):
    """The tiny model of ``family`` (its ``tiny_arch``); keyword arguments
    override the defaults."""
    spec = FAMILIES[family]
    kwargs = {**TINY_KWARGS.get(family, {}), **kwargs}
    kwargs.setdefault('arch', copy.deepcopy(spec.tiny_arch))
    return spec.backbone_class(**kwargs)


class _TinyBackbones(Mapping):
    """A factory of the tiny model of every family in the table, families
    registered later included."""

    def __getitem__(self, family: str) -> Callable:
        if family not in FAMILIES:
            raise KeyError(family)
        return lambda **kwargs: tiny_backbone(family, **kwargs)

    def __iter__(self) -> Iterator[str]:
        return iter(list(FAMILIES))

    def __len__(self) -> int:
        return len(FAMILIES)


BACKBONES = _TinyBackbones()


def _ceil_div(size: int, stride: int) -> int:
    return -(-size // stride)


def _pyramid_shapes(height: int, width: int, channels: List[int],
                    first_stride: int) -> List[Tuple[int, int, int]]:
    # A stride-``first_stride`` first stage, then stride 2, each rounding up
    # (convs padded by half their kernel).
    h, w = _ceil_div(height, first_stride), _ceil_div(width, first_stride)
    shapes = []
    for i, dims in enumerate(channels):
        if i:
            h, w = _ceil_div(h, 2), _ceil_div(w, 2)
        shapes.append((dims, h, w))
    return shapes


def _refiner_grid(height: int, width: int) -> Tuple[int, int]:
    # The input padded to a multiple of the 16-pixel patches.
    return _ceil_div(height, 16), _ceil_div(width, 16)


class Contract(NamedTuple):
    """What a backbone promises, for the contract tests.

    Args:
        min_size (int): The total stride: smaller inputs are refused.
        out_shapes (Callable): (C, h, w) of each output for an (H, W)
            input.
        kwargs (dict): Arguments for the contract tests' model, so that it
            has every kind of block and layer of its family.
        frozen (Callable, optional): The names of the modules that stage i
            freezes; None if the backbone has no ``frozen_stages``.
        num_stages (int): Stages ``frozen_stages`` counts.
        has_batch_norm (bool): Whether ``norm_eval`` has BatchNorms to keep
            in eval mode.
    """
    min_size: int
    out_shapes: Callable[[int, int], List[Tuple[int, int, int]]]
    kwargs: dict = {}
    frozen: Optional[Callable[[int], List[str]]] = None
    num_stages: int = 0
    has_batch_norm: bool = True


# Every family of the table states its contract here (a family registered
# from outside adds its own).
CONTRACTS = {
    'scalablevit':
    Contract(
        min_size=32,
        out_shapes=lambda h, w: _pyramid_shapes(h, w, [16, 32, 48, 64], 4),
        frozen=lambda i: [f'stages.{i}', f'norm{i}'],
        num_stages=4,
        has_batch_norm=False),
    'groupmixformer':
    Contract(
        min_size=32,
        out_shapes=lambda h, w: _pyramid_shapes(h, w, [40, 40, 80, 80], 4),
        kwargs=dict(final_norm=True),
        # The stem with the first stage, the final norm with the last.
        frozen=lambda i: (['stem'] if i == 0 else []) + [f'stages.{i}'] +
        (['norm3'] if i == 3 else []),
        num_stages=4),
    'refiner':
    Contract(
        min_size=16, out_shapes=lambda h, w: [(48, *_refiner_grid(h, w))] * 2),
}
