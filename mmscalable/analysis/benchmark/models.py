# Copyright (c) mmscalable contributors. All rights reserved.
"""Which models the benchmark knows, how each is built, and at which input
size and batch it runs.

A builder is ``fn(impl) -> nn.Module`` with ``impl`` ``'reference'`` or
``'fast'``; :class:`ModelPair` builds both from one builder with the same
weights, and :func:`compiled` puts the fast one under ``torch.compile``.
"""
import dataclasses
import functools
from typing import Callable, Dict, Mapping, Optional, Union

import torch
import torch.nn as nn

# The implementations: the computation of the official code, and the
# default fast path.
IMPLS = ('reference', 'fast')
# The ``torch.compile`` modes the fast path can also be timed in.
COMPILE_MODES = ('default', 'reduce-overhead')

Builder = Callable[[str], nn.Module]


def _families() -> Mapping:
    """The backbone families, whose variants are the named models."""
    from mmscalable.models.families import FAMILIES
    return FAMILIES


def registered_class(name: str) -> type:
    """The class registered as ``name`` (mmscalable's MODELS registry)."""
    from mmscalable.models.families import registered_class
    return registered_class(name)


def backbone_builder(backbone: str, arch: Union[str, dict],
                     **kwargs) -> Builder:
    """A builder ``fn(impl)`` of a backbone registered in the ``mmscalable``
    MODELS registry, built with ``attn_impl=impl`` and no drop path.

    Args:
        backbone (str): The registered name (``'ScalableViT'``).
        arch (str | dict): Its ``arch``.
        **kwargs: Further arguments of the backbone.
    """

    def build(impl: str) -> nn.Module:
        # The class itself, not ``REGISTRY.build``: a default scope left by
        # a whole-model builder (mmdet, mmseg) would redirect the lookup.
        return registered_class(backbone)(
            arch=arch, attn_impl=impl, drop_path_rate=0., **kwargs)

    return build


def arch_builders(backbone: str, model_prefix: str) -> Dict[str, Builder]:
    """Builders of every variant of a registered backbone's ``arch_zoo``
    (one per distinct variant), named ``<model_prefix>-<arch>``.

    Args:
        backbone (str): The registered name of the backbone class.
        model_prefix (str): The first part of the model names.
    """
    from mmscalable.models.checkpoint import canonical_archs
    archs = canonical_archs(registered_class(backbone).arch_zoo)
    return {
        f'{model_prefix}-{arch}': backbone_builder(backbone, arch)
        for arch in archs
    }


def family_builders() -> Dict[str, Builder]:
    """Builders of every variant of every backbone family."""
    builders = {}
    for family in _families().values():
        builders.update(arch_builders(family.backbone, family.model_prefix))
    return builders


@functools.lru_cache(maxsize=None)
def named_models() -> Dict[str, Builder]:
    """The named models (``scalablevit-s`` ...): :func:`family_builders`,
    made on first use, as it imports every backbone (importing the
    benchmark stays cheap for the timing helpers)."""
    return family_builders()


def resolve_builder(name: str,
                    builders: Optional[Dict[str, Builder]] = None) -> Builder:
    """The builder of a model name, or of a detector / segmentor config
    (a path ending in ``.py``, see ``task_models.py``).

    Args:
        name (str): A key of ``builders``, or a config path.
        builders (dict, optional): Builders by name. Defaults to
            :func:`named_models`.
    """
    builders = named_models() if builders is None else builders
    if name in builders:
        return builders[name]
    if name.endswith('.py'):
        from ..task_models import config_builder
        return config_builder(name)
    raise KeyError(f'unknown models [{name!r}]; known: {list(builders)} '
                   'or an mmdet / mmseg config path')


@dataclasses.dataclass
class Setting:
    """An input size and batch, parsed from ``'HxW:B'`` (e.g. ``224x224:64``).

    Args:
        height (int): Input height.
        width (int): Input width.
        batch (int): Images per call.
    """
    height: int
    width: int
    batch: int

    @classmethod
    def parse(cls, text: str) -> 'Setting':
        try:
            size, batch = text.split(':')
            height, width = size.lower().split('x')
            setting = cls(int(height), int(width), int(batch))
        except ValueError:
            raise ValueError(f'a setting is HxW:BATCH (e.g. 224x224:64), '
                             f'got {text!r}') from None
        if min(setting.height, setting.width, setting.batch) < 1:
            raise ValueError(f'sizes and batch must be positive: {text!r}')
        return setting

    def __str__(self) -> str:
        return f'{self.height}x{self.width}:{self.batch}'


def compiled(model: nn.Module, compile_mode: Optional[str]) -> nn.Module:
    """``model`` under ``torch.compile`` in ``compile_mode`` (one of
    :data:`COMPILE_MODES`), or as it is when that is None."""
    if compile_mode is None:
        return model
    return torch.compile(model, mode=compile_mode)


@dataclasses.dataclass
class ModelPair:
    """One model built per implementation, with the same weights.

    Args:
        fast (nn.Module): The fast path.
        reference (nn.Module): The reference path, with the fast one's
            weights.
        initial_state (dict): The weights both were built with.
        params (int): Parameters of one model.
    """
    fast: nn.Module
    reference: nn.Module
    initial_state: Dict[str, torch.Tensor]
    params: int

    @classmethod
    def build(cls, builder: Builder, device: torch.device) -> 'ModelPair':
        torch.manual_seed(0)
        fast = builder('fast').to(device)
        reference = builder('reference').to(device)
        reference.load_state_dict(fast.state_dict(), strict=True)
        initial_state = {k: v.clone() for k, v in fast.state_dict().items()}
        params = sum(p.numel() for p in fast.parameters())
        return cls(fast, reference, initial_state, params)

    def model(self,
              impl: str,
              compile_mode: Optional[str] = None) -> nn.Module:
        """The model that ``impl`` (under ``torch.compile`` in
        ``compile_mode``, if given) times, at the initial weights (a
        training step changes them, and every timed run starts from the
        same)."""
        model = self.reference if impl == 'reference' else self.fast
        model.load_state_dict(self.initial_state)
        return compiled(model, compile_mode)
