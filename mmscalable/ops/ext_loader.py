# Copyright (c) mmscalable contributors. All rights reserved.
"""Loading of the compiled ops module ``mmscalable._ext``, and the Python
side of its ops.

Loading the module's shared library registers its ops with PyTorch's
dispatcher as ``torch.ops.mmscalable.<op>``, with a CPU kernel and, in a
CUDA build, a CUDA kernel each. What the library cannot say in C++ is added
from Python with :func:`register_op`: the fake (meta) implementation that
``torch.compile`` and ``torch.export`` trace, and the autograd formula.

The extension is optional: every op has a pure-PyTorch reference that is used
when the module was not built (``MMSCALABLE_WITH_OPS=0``), cannot be loaded
(e.g. a CUDA build on a machine without the CUDA libraries), or is switched
off with the environment variable ``MMSCALABLE_DISABLE_EXT=1``;
:func:`has_compiled_kernel` is the one rule that picks between the two.

Run ``python -m mmscalable.ops`` to print what was found.
"""
import importlib
import os
from types import ModuleType
from typing import Callable, Dict, NamedTuple, Optional, Sequence

import torch

from mmscalable import torch_compat

EXT_MODULE_NAME = 'mmscalable._ext'
OP_NAMESPACE = 'mmscalable'
DISABLE_ENV_VAR = 'MMSCALABLE_DISABLE_EXT'
# The dtypes the kernels of mmscalable._ext are instantiated for (the C++
# fronts reject others).
KERNEL_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)

# Result of the one import attempt: (module or None, error message or None).
# Importing a shared library cannot be undone, so it is tried once; the
# disable switch is read on every call instead, so that tests and benchmarks
# can toggle it at run time.
_import_result: Optional[tuple] = None


class _OpRegistration(NamedTuple):
    fake: Callable
    backward: Optional[Callable]
    setup_context: Optional[Callable]


# Every op declared with register_op, and those of them already registered
# with torch.library (a fake implementation can only be registered once the
# library has defined the op's schema, i.e. after the import).
_declared_ops: Dict[str, _OpRegistration] = {}
_registered_ops: set = set()


def ext_disabled() -> bool:
    """Whether the environment forces the pure-PyTorch reference ops.

    Returns:
        bool: True when ``MMSCALABLE_DISABLE_EXT`` is set to ``1``.
    """
    return os.environ.get(DISABLE_ENV_VAR, '0') == '1'


def _register_declared_ops() -> None:
    """Register the declared ops not registered yet, if the module is
    loaded. An op the library does not define means the module was built
    from older sources: it is then treated as not loadable, with that
    reason, so that every op falls back to its reference together."""
    global _import_result
    if _import_result is None or _import_result[0] is None:
        return
    namespace = getattr(torch.ops, OP_NAMESPACE)
    for name, registration in _declared_ops.items():
        if name in _registered_ops:
            continue
        if not hasattr(namespace, name.split('::', 1)[1]):
            _import_result = (
                None, f'{EXT_MODULE_NAME} does not define the op {name}: it '
                'was built from older sources; rebuild it (`pip install -e '
                '.` or `python setup.py build_ext --inplace`)')
            return
        torch_compat.register_fake(name, registration.fake)
        if registration.backward is not None:
            torch_compat.register_autograd(
                name,
                registration.backward,
                setup_context=registration.setup_context)
        _registered_ops.add(name)


def _import_ext() -> tuple:
    global _import_result
    if _import_result is None:
        try:
            _import_result = (importlib.import_module(EXT_MODULE_NAME), None)
        except ImportError as err:
            _import_result = (None, f'{type(err).__name__}: {err}')
        _register_declared_ops()
    return _import_result


def register_op(name: str,
                fake: Callable,
                backward: Optional[Callable] = None,
                setup_context: Optional[Callable] = None) -> None:
    """Give a compiled op its fake implementation and autograd formula.

    The op's schema and device kernels come from the C++ front file
    (``TORCH_LIBRARY_FRAGMENT`` / ``TORCH_LIBRARY_IMPL``); this adds what
    ``torch.compile``, ``torch.export`` and autograd need from Python, with
    ``torch.library.register_fake`` and ``torch.library.register_autograd``
    (on a torch older than 2.4, through the fallbacks of
    :mod:`mmscalable.torch_compat`: an autograd function, and no fake
    implementation). The registration happens once per op: at once if
    ``mmscalable._ext`` is loaded, else when it gets loaded (it never is
    without the module, whose library defines the op).

    Args:
        name (str): Qualified op name, e.g. ``'mmscalable::window_reverse'``.
        fake (Callable): Takes the op's arguments (tensors as fake tensors)
            and returns empty results of the right shapes, dtypes and
            devices.
        backward (Callable, optional): ``backward(ctx, *grads)``, returning
            one gradient (or None) per input of the op. None for an op that
            is not differentiated (e.g. a backward op). Defaults to None.
        setup_context (Callable, optional): ``setup_context(ctx, inputs,
            output)``, saving what ``backward`` needs. Defaults to None.
    """
    if name in _declared_ops:
        return
    _declared_ops[name] = _OpRegistration(fake, backward, setup_context)
    _register_declared_ops()


def load_ext() -> Optional[ModuleType]:
    """Return the compiled ops module, or None when it cannot be used.

    Only ``ImportError`` (which covers a missing module and a shared library
    that fails to load) is caught; its message is kept for :func:`ext_info`.
    Loading registers the ops declared with :func:`register_op`.

    Returns:
        ModuleType | None: ``mmscalable._ext``, or None if it is missing,
        fails to load, lacks a declared op, or is disabled by
        ``MMSCALABLE_DISABLE_EXT=1``.
    """
    if ext_disabled():
        return None
    return _import_ext()[0]


def ext_compiled_with_cuda(ext: Optional[ModuleType]) -> bool:
    """Whether ``ext`` (as returned by :func:`load_ext`) has CUDA kernels.

    Args:
        ext (ModuleType | None): The compiled ops module or None.

    Returns:
        bool: False for None.
    """
    return ext is not None and bool(ext.compiled_with_cuda())


def has_compiled_kernel(tensor: torch.Tensor,
                        dtypes: Sequence[torch.dtype] = KERNEL_DTYPES,
                        keep_under_compile: bool = True) -> bool:
    """Whether an op's public function should call its compiled kernel
    (``torch.ops.mmscalable.<op>``) for ``tensor``, rather than its
    pure-PyTorch reference.

    A kernel exists in the given ``dtypes`` for CPU tensors, and for CUDA
    tensors when the module was built with CUDA, as long as the module is
    loaded and ``MMSCALABLE_DISABLE_EXT`` is not set. Under
    ``torch.jit.trace`` and during ONNX export there is none: the tracer
    would keep the call as an opaque op, and ONNX has no operator for it, so
    both trace the reference instead. ``torch.compile`` and ``torch.export``
    keep the op as one node (through its fake implementation) unless
    ``keep_under_compile`` is False, or torch has no
    ``torch.library.register_fake`` (< 2.4): then they trace the reference.

    Args:
        tensor (torch.Tensor): The input of the op that decides its device
            and dtype.
        dtypes (Sequence[torch.dtype]): The dtypes the op's kernels are
            instantiated for. Defaults to :data:`KERNEL_DTYPES`.
        keep_under_compile (bool): False for an op whose reference the
            compiler does better with than with the opaque op (it fuses the
            reference into the neighbouring kernels): then there is no
            kernel while ``torch.compiler.is_compiling()``. Defaults to True.

    Returns:
        bool: Whether ``torch.ops.mmscalable.<op>`` should run.
    """
    if (tensor.dtype not in dtypes or torch.jit.is_tracing()
            or torch.onnx.is_in_onnx_export()):
        return False
    if not (keep_under_compile and torch_compat.HAS_REGISTER_FAKE) and \
            torch_compat.is_compiling():
        return False
    ext = load_ext()
    if ext is None:
        return False
    if tensor.device.type == 'cpu':
        return True
    return tensor.device.type == 'cuda' and ext_compiled_with_cuda(ext)


def ext_info() -> dict:
    """Describe the compiled ops module.

    Returns:
        dict: ``available`` (bool, the module is loaded and not disabled),
        ``cuda`` (bool, it has CUDA kernels), ``ops`` (list of str, the
        ``torch.ops.mmscalable`` ops its library registered), ``error``
        (str | None, why it is not available), ``compile_note`` (str |
        None, why ``torch.compile`` / ``torch.export`` cannot keep the ops
        on this torch).
    """
    module, error = _import_ext()
    if module is not None and ext_disabled():
        module, error = None, f'disabled by {DISABLE_ENV_VAR}=1'
    ops = [] if module is None else sorted(
        name.split('::', 1)[1]
        for name in torch._C._dispatch_get_all_op_names()
        if name.startswith(f'{OP_NAMESPACE}::'))
    return {
        'available': module is not None,
        'cuda': ext_compiled_with_cuda(module),
        'ops': ops,
        'error': error,
        'compile_note': torch_compat.compile_support_note(),
    }
