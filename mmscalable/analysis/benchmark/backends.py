# Copyright (c) mmscalable contributors. All rights reserved.
"""Which kernels a model's calls ran.

* ``sdpa_backends``: the backends of ``scaled_dot_product_attention`` in
  one forward, told by ``torch.profiler``'s kernel op names (flash,
  efficient, cudnn, math, or the CPU's flash kernel, ``flash_cpu``). The
  reference path, and the fast path on the CPU, attend explicitly and run
  none.
* ``refined_attention_backends``: how Refiner-ViT's refiner blocks
  computed their refined maps in their last call (``'ext'``, the fused
  op, ``'chunked'``, ``'explicit'`` or ``'reference'``).
* ``backends``: the backends each module of the model dispatched its ops
  to in the calls of one record, from the layers' own record of them.
"""
from typing import Callable, Dict, List, Optional

import torch.nn as nn

# The backend of each ``scaled_dot_product_attention`` kernel op, by the
# start of its profiler name; the first match wins (the CPU flash kernel's
# name extends the CUDA one's).
SDPA_BACKEND_OPS = (
    ('aten::_scaled_dot_product_flash_attention_for_cpu', 'flash_cpu'),
    ('aten::_scaled_dot_product_flash_attention', 'flash'),
    ('aten::_flash_attention_forward', 'flash'),
    ('aten::_scaled_dot_product_efficient_attention', 'efficient'),
    ('aten::_efficient_attention_forward', 'efficient'),
    ('aten::_scaled_dot_product_cudnn_attention', 'cudnn'),
    ('aten::_cudnn_attention_forward', 'cudnn'),
    ('aten::_scaled_dot_product_attention_math', 'math'),
    ('aten::_scaled_dot_product_fused_attention_overrideable', 'overrideable'),
)


def _sdpa_backend(op_name: str) -> Optional[str]:
    """The SDPA backend that a profiler op name belongs to, None for other
    ops and for backward ops."""
    if op_name.endswith('_backward'):
        return None
    for prefix, backend in SDPA_BACKEND_OPS:
        if op_name.startswith(prefix):
            return backend
    return None


def _inside_sdpa_op(event) -> bool:
    parent = event.cpu_parent
    while parent is not None:
        if _sdpa_backend(parent.name) is not None:
            return True
        parent = parent.cpu_parent
    return False


def sdpa_backends(fn: Callable[[], None]) -> Dict[str, int]:
    """How many times one call of ``fn`` ran each backend of
    ``torch.nn.functional.scaled_dot_product_attention``.

    The backends are told by the kernel ops that ``torch.profiler`` records
    on the host (:data:`SDPA_BACKEND_OPS`), alike on every device. A kernel
    op called by another (``_efficient_attention_forward`` by
    ``_scaled_dot_product_efficient_attention``) counts once, and backward
    ops do not count. Ops that ``torch.compile`` traces while compiling are
    recorded too: call ``fn`` once before.

    Args:
        fn (Callable): What to run once, under the profiler.

    Returns:
        dict: Calls per backend, e.g. ``{'flash': 12, 'math': 4}``
        (``'flash_cpu'`` is the CPU flash kernel), sorted by name; empty
        when ``fn`` attends without SDPA.
    """
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    counts: Dict[str, int] = {}
    for event in prof.events():
        backend = _sdpa_backend(event.name)
        if backend is not None and not _inside_sdpa_op(event):
            counts[backend] = counts.get(backend, 0) + 1
    return dict(sorted(counts.items()))


def refined_attention_backends(model: nn.Module) -> Dict[str, int]:
    """How the refiner blocks of ``model`` computed their refined maps in
    their last call: blocks per backend (``'ext'``, ``'chunked'``,
    ``'explicit'``, ``'reference'``; see ``RefinedAttention.backend``);
    empty for models without refiner blocks."""
    counts: Dict[str, int] = {}
    for module in model.modules():
        backend = getattr(module, 'backend', None)
        if isinstance(backend, str) and hasattr(module, 'refinement'):
            counts[backend] = counts.get(backend, 0) + 1
    return counts


def reset_dispatched_backends(model: nn.Module) -> None:
    """Forget the backends that the modules of ``model`` dispatched to so
    far, so that :func:`dispatched_backends` covers the calls after this
    one only (a model is checked and timed several times)."""
    try:
        from mmscalable.models.layers.dispatch import reset_backends
    except ImportError:
        return
    reset_backends(model)


def dispatched_backends(model: nn.Module) -> Dict[str, List[str]]:
    """The backends that the modules of ``model`` dispatched their ops to
    since :func:`reset_dispatched_backends`: ``{module class name: sorted
    backend names}`` (``mmscalable.models.layers.dispatch.backends_used``);
    empty where the layers keep no such record."""
    try:
        from mmscalable.models.layers.dispatch import backends_used
    except ImportError:
        return {}
    return {
        name: sorted(backends)
        for name, backends in backends_used(model).items()
    }
