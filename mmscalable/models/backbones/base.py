# Copyright (c) mmscalable contributors. All rights reserved.
"""What the backbones share: argument and input checks, and
``BaseBackbone`` (the loop over stages and their outputs, frozen stages,
``norm_eval``, activation checkpointing and pretrained loading)."""
from typing import (Callable, Dict, Iterable, List, Optional, Sequence, Tuple,
                    Union)

import torch
import torch.nn as nn
import torch.utils.checkpoint as cp
from mmengine.logging import MMLogger
from mmengine.model import BaseModule
from mmengine.model.weight_init import constant_init, trunc_normal_init
from torch import Tensor
from torch.nn.modules.batchnorm import _BatchNorm

from ..checkpoint import load_pretrained_backbone


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


def stage_drop_path_rates(drop_path_rate: float,
                          depths: Sequence[int]) -> List[List[float]]:
    """Stochastic depth of every block, rising linearly from 0 over all
    ``depths`` blocks to ``drop_path_rate``, as one list per stage."""
    rates = torch.linspace(0, drop_path_rate, sum(depths)).tolist()
    firsts = [sum(depths[:i]) for i in range(len(depths))]
    return [
        rates[first:first + depth] for first, depth in zip(firsts, depths)
    ]


def contiguous_map(x: Tensor) -> Tensor:
    """A (B, C, H, W) map as the backbones return it: contiguous NCHW.

    A token-to-map view is channels-last, which convs pass on to the neck,
    and mmcv's CPU RoIAlign reads channels-last features as NCHW (wrong RoI
    features, no error).
    """
    return x.contiguous()


def checkpoint_if(enabled: bool, fn: Callable, *args):
    """``fn(*args)``; with ``enabled`` (a block's ``with_cp``) and a tensor
    argument that requires grad, its activations are recomputed in backward
    instead of kept (``torch.utils.checkpoint``, non-reentrant)."""
    if enabled and any(
            isinstance(arg, Tensor) and arg.requires_grad for arg in args):
        return cp.checkpoint(fn, *args, use_reentrant=False)
    return fn(*args)


def init_transformer_weights(module: nn.Module,
                             init_conv: Callable[[nn.Conv2d], None]) -> None:
    """The official codes' initialization (timm's): Linear weights from a
    truncated normal of std 0.02 with zero biases, LayerNorms at 1 and 0,
    and ``init_conv`` for every ``nn.Conv2d``.

    Args:
        module (nn.Module): Initialised in place, with all its submodules.
        init_conv (Callable): Initialises one conv (e.g.
            ``nn.Conv2d.reset_parameters``: PyTorch's default, which undoes
            the Kaiming normal of mmcv's ``ConvModule``).
    """
    for m in module.modules():
        if isinstance(m, nn.Linear):
            trunc_normal_init(m, std=.02, bias=0.)
        elif isinstance(m, nn.LayerNorm):
            constant_init(m, val=1.0, bias=0.)
        elif isinstance(m, nn.Conv2d):
            init_conv(m)


class BaseBackbone(BaseModule):
    """The base of the backbones: frozen stages, ``norm_eval``,
    ``with_cp`` and ``init_cfg=dict(type='Pretrained')``.

    A subclass passes these arguments on, builds its layers, then calls
    ``self._freeze_stages()`` at the end of its ``__init__``. It overrides:

    - ``_frozen_modules(i)``: the modules that stage ``i`` freezes, if it
      takes ``frozen_stages``; ``num_stages`` bounds ``frozen_stages``.
    - ``_normalize_output(i, x)``: stage ``i``'s output through its output
      norm, if its output norms are not norms of the map named
      ``norm{i}``.
    - ``_init_default_weights()``: its initialization when ``init_cfg`` is
      None (after mmengine's), if it has one.
    - ``official_converter``, ``is_official`` and ``optional_missing``
      (class attributes) for pretrained loading, or ``load_pretrained``.

    Its forward may run its stages with ``_forward_stages``; its blocks
    call ``checkpoint_if(self.with_cp, fn, x)``.

    Args:
        frozen_stages (int): Stages to freeze (parameters fixed, eval mode);
            -1 freezes none. Defaults to -1.
        norm_eval (bool): Keep every BatchNorm in eval mode (frozen
            statistics) while training. Defaults to False.
        with_cp (bool): Gradient checkpointing of the blocks.
            Defaults to False.
        init_cfg (dict, optional): Initialization config.
            ``type='Pretrained'`` (with ``checkpoint``, an optional
            ``prefix`` and ``ema=False`` for the trained weights of a
            checkpoint that also holds their EMA) calls ``load_pretrained``.
            Defaults to None.
    """
    # Stages that frozen_stages counts; 0: none can be frozen.
    num_stages: int = 0
    # Pretrained loading: ``official_converter`` maps an official
    # checkpoint to classifier keys (``backbone.*``) where ``is_official``
    # recognises one (both wrapped in ``staticmethod``); keys under the
    # ``optional_missing`` prefixes keep their initialization when a
    # checkpoint lacks them (e.g. output norms a classifier has not).
    official_converter: Optional[Callable[[dict], dict]] = None
    is_official: Optional[Callable[[dict], bool]] = None
    optional_missing: Tuple[str, ...] = ()

    def __init__(self,
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 with_cp: bool = False,
                 init_cfg: Optional[dict] = None):
        super().__init__(init_cfg=init_cfg)
        self.frozen_stages = check_frozen_stages(frozen_stages,
                                                 self.num_stages)
        self.norm_eval = norm_eval
        self.with_cp = with_cp

    def _frozen_modules(self, i: int) -> List[nn.Module]:
        """The modules that freezing stage ``i`` (from 0) freezes."""
        raise NotImplementedError(
            f'{type(self).__name__} does not say what its stages freeze')

    def _freeze_stages(self) -> None:
        for i in range(max(self.frozen_stages, 0)):
            for module in self._frozen_modules(i):
                module.eval()
                for param in module.parameters():
                    param.requires_grad = False

    def _forward_stages(self, x: Tensor,
                        stages: Iterable[Callable[[Tensor], Tensor]]
                        ) -> Tuple[Tensor, ...]:
        """Run ``stages`` on ``x`` in turn, each on the map the previous
        one returns, up to the last of ``self.out_indices``.

        Returns:
            tuple[Tensor]: For each of ``out_indices``, that stage's map
            through its output norm (``_normalize_output``), contiguous.
        """
        outs = []
        for i, stage in enumerate(stages):
            x = stage(x)
            if i in self.out_indices:
                outs.append(contiguous_map(self._normalize_output(i, x)))
            if i == self.out_indices[-1]:
                break
        return tuple(outs)

    def _normalize_output(self, i: int, x: Tensor) -> Tensor:
        """The output ``x`` of stage ``i`` through the stage's output norm:
        by default the map through ``norm{i}`` where the backbone has
        one."""
        norm = getattr(self, f'norm{i}', None)
        return x if norm is None else norm(x)

    def train(self, mode: bool = True):
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, _BatchNorm):
                    m.eval()
        return self

    def init_weights(self):
        if (isinstance(self.init_cfg, dict)
                and self.init_cfg.get('type') == 'Pretrained'):
            self.load_pretrained(self.init_cfg['checkpoint'],
                                 self.init_cfg.get('prefix'),
                                 self.init_cfg.get('ema', True))
            return
        super().init_weights()
        if self.init_cfg is None:
            self._init_default_weights()

    def _init_default_weights(self) -> None:
        """The initialization without ``init_cfg`` (the official one)."""

    def load_pretrained(self,
                        checkpoint: str,
                        prefix: Optional[str] = None,
                        ema: bool = True) -> None:
        """Load weights of this backbone, of a classifier (with
        ``prefix='backbone.'``) or of the official code (converted on the
        fly), as ``init_cfg=dict(type='Pretrained')`` does: the EMA weights
        where the checkpoint has them, unless ``ema=False`` (in
        ``init_cfg`` too).

        Raises:
            ValueError: If the checkpoint does not fit the backbone (see
                ``load_pretrained_backbone``).
        """
        load_pretrained_backbone(
            self,
            checkpoint,
            prefix=prefix,
            official_converter=self.official_converter,
            is_official=self.is_official,
            optional_missing=self.optional_missing,
            ema=ema,
            logger=MMLogger.get_current_instance())
