# Copyright (c) mmscalable contributors. All rights reserved.
"""Which backend computes an attention call: one function, named backends.

Every attention of mmscalable computes one function in two ways, chosen by
``impl`` (backbones: ``attn_impl``): ``'reference'``, the official
computation, and ``'fast'``. What ``'fast'`` runs depends on the call: the
device and dtype, training or not, whether a backward will run, whether
``torch.compile`` or a tracer is recording, deterministic mode, and the
limits of the compiled extension. :func:`select_backend` is the one place
that decides it, for every module, by the rule of the module's class
(:data:`RULES`), and names the result:

- ``reference``: the official computation (``impl='reference'``);
- ``explicit``: the fast formulation in plain tensor ops, with the
  attention weights materialised;
- ``sdpa``: ``F.scaled_dot_product_attention``, which never writes the
  weights to memory;
- ``ext``: a compiled op of :mod:`mmscalable.ops`;
- ``chunked``: the maps in chunks of query rows under a memory budget.

Each module keeps the backends it ran (:func:`backends_used` collects them
over a model; the benchmark records them), and the first call of each
module class with each backend is logged at DEBUG level.
"""
import dataclasses
import logging
from typing import Callable, Dict, Iterable, List, Optional, Set, Tuple

import torch
import torch.nn as nn
from mmengine.logging import print_log
from torch import Tensor

from mmscalable.ops import fused_kernel_applies
from mmscalable.torch_compat import (get_autocast_dtype, is_autocast_enabled,
                                     is_compiling)
from .fused_convs import depthwise_op_applies, depthwise_op_pays

BACKENDS = ('reference', 'explicit', 'sdpa', 'ext', 'chunked')


@dataclasses.dataclass(frozen=True)
class CallFacts:
    """What decides the backend of one call.

    Args:
        device (str): The input's device type (``'cpu'``, ``'cuda'``).
        dtype (torch.dtype): The dtype the call computes in: the input's,
            or autocast's where autocast is on.
        training (bool): The module's training flag.
        needs_grad (bool): Whether a backward will run through the call.
        compiling (bool): Whether ``torch.compile`` / ``torch.export`` is
            tracing the call.
        tracing (bool): Whether ``torch.jit.trace`` or an ONNX export is
            recording it.
        deterministic (bool): Whether deterministic algorithms are required.
    """
    device: str
    dtype: torch.dtype
    training: bool
    needs_grad: bool
    compiling: bool
    tracing: bool
    deterministic: bool


def call_facts(module: nn.Module, x: Tensor,
               others: Iterable[Tensor] = ()) -> CallFacts:
    """The :class:`CallFacts` of ``module`` called on ``x`` (and the other
    input tensors ``others``)."""
    needs_grad = torch.is_grad_enabled() and (
        x.requires_grad or any(t.requires_grad for t in others)
        or any(p.requires_grad for p in module.parameters()))
    device = x.device.type
    dtype = x.dtype
    if x.is_floating_point() and is_autocast_enabled(device):
        # What the module's matmuls and convs compute in.
        dtype = get_autocast_dtype(device)
    return CallFacts(
        device=device,
        dtype=dtype,
        training=module.training,
        needs_grad=needs_grad,
        compiling=is_compiling(),
        tracing=torch.jit.is_tracing() or torch.onnx.is_in_onnx_export(),
        deterministic=torch.are_deterministic_algorithms_enabled())


# A rule takes the module, the facts of its call and the keyword inputs
# that :func:`select_backend` was given, and returns a backend's name.
Rule = Callable[..., str]
RULES: Dict[str, Rule] = {}


def backend_rule(*class_names: str) -> Callable[[Rule], Rule]:
    """Register a rule for the modules of the classes ``class_names`` (and
    their subclasses)."""

    def register(rule: Rule) -> Rule:
        for name in class_names:
            RULES[name] = rule
        return rule

    return register


def _rule_of(module: nn.Module) -> Rule:
    for cls in type(module).__mro__:
        if cls.__name__ in RULES:
            return RULES[cls.__name__]
    raise KeyError(f'no backend rule for {type(module).__name__}; rules '
                   f'exist for {sorted(RULES)}')


def select_backend(module: nn.Module, x: Tensor, **inputs) -> str:
    """The backend that computes ``module``'s call on ``x``.

    ``'reference'`` where ``module.impl`` is ``'reference'``; else what the
    rule of the module's class returns for the call. The choice is noted on
    the module (:func:`backends_used`) and logged at DEBUG level the first
    time a module class runs a backend.

    Args:
        module (nn.Module): The attention (it has ``impl``).
        x (Tensor): Its input: device, dtype and gradients decide.
        **inputs: What else the rule needs (other input tensors, sizes).

    Returns:
        str: One of :data:`BACKENDS`.
    """
    if module.impl == 'reference':
        backend = 'reference'
    else:
        others = [v for v in inputs.values() if isinstance(v, Tensor)]
        facts = call_facts(module, x, others)
        backend = _rule_of(module)(module, facts, **inputs)
    if backend not in BACKENDS:
        raise ValueError(f'{type(module).__name__}: a backend rule returned '
                         f'{backend!r}, not one of {BACKENDS}')
    if not is_compiling():
        _note(module, backend)
    return backend


_LOGGED: Set[Tuple[str, str]] = set()


def _note(module: nn.Module, backend: str) -> None:
    used = module.__dict__.setdefault('_backends_used', set())
    used.add(backend)
    key = (type(module).__name__, backend)
    if key not in _LOGGED:
        _LOGGED.add(key)
        print_log(
            f'{key[0]} computes with the {backend!r} backend',
            logger='current',
            level=logging.DEBUG)


def backends_used(model: nn.Module) -> Dict[str, List[str]]:
    """{module class: the backends its modules ran} over ``model``, since
    it was built or :func:`reset_backends` last ran."""
    used: Dict[str, Set[str]] = {}
    for module in model.modules():
        names = module.__dict__.get('_backends_used')
        if names:
            used.setdefault(type(module).__name__, set()).update(names)
    return {name: sorted(names) for name, names in sorted(used.items())}


def reset_backends(model: nn.Module) -> None:
    """Forget the backends that ``model``'s modules ran."""
    for module in model.modules():
        module.__dict__.pop('_backends_used', None)


def prefers_one_launch(facts: CallFacts) -> bool:
    """Whether fused formulations (SDPA) pay on the call's device.

    On a GPU these backbones are bound by kernel launches and memory
    traffic (the reference reaches 2-8% of an H100's bf16 peak), so the fast
    paths attend with ``F.scaled_dot_product_attention``, which never
    writes the weights to memory. On the CPU, measured on 2 cores
    (docs/speed.md), the CPU SDPA kernels on these shapes (thousands of
    queries, tens to hundreds of keys) are slower than the plain
    computation, so the fast path attends explicitly there.
    """
    return facts.device != 'cpu'


@backend_rule('ScalableSelfAttention', 'InteractiveWindowAttention')
def _scaled_dot_product_rule(module: nn.Module, facts: CallFacts) -> str:
    return 'sdpa' if prefers_one_launch(facts) else 'explicit'


@backend_rule('RefinedAttention')
def _refined_attention_rule(module: nn.Module,
                            facts: CallFacts,
                            prev_attn: Optional[Tensor] = None,
                            value: Optional[Tensor] = None,
                            chunk_rows: Optional[int] = None) -> str:
    # The fused op computes a refiner block's refine(A) @ v where its
    # kernel takes the maps (device, dtype, size; not under a tracer;
    # no deterministic backward on CUDA) and the norms are frozen.
    if (module.refine and value is not None and module.fusable()
            and fused_kernel_applies(prev_attn, module.hidden_channels,
                                     value.shape[-1], facts.needs_grad)):
        return 'ext'
    return 'chunked' if chunk_rows is not None else 'explicit'


@backend_rule('GroupMixAttention')
def _group_mix_attention_rule(module: nn.Module, facts: CallFacts,
                              hw_shape: Tuple[int, int]) -> str:
    # The depthwise convs of the proxies and of the position encoding as
    # one compiled op each, where the op's kernel computes them on the
    # call's device and dtype and is the faster way there.
    x = torch.empty(0, dtype=facts.dtype, device=facts.device)
    if (depthwise_op_applies(module.depthwise_convs(), x)
            and depthwise_op_pays(x, hw_shape)):
        return 'ext'
    return 'explicit'
