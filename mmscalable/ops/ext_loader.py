# Copyright (c) mmscalable contributors. All rights reserved.
"""Loading of the compiled ops module ``mmscalable._ext``.

The extension is optional: every op has a pure-PyTorch reference that is used
when the module was not built (``MMSCALABLE_WITH_OPS=0``), cannot be loaded
(e.g. a CUDA build on a machine without the CUDA libraries), or is switched
off with the environment variable ``MMSCALABLE_DISABLE_EXT=1``.

Run ``python -m mmscalable.ops`` to print what was found.
"""
import importlib
import os
from types import ModuleType
from typing import Optional

EXT_MODULE_NAME = 'mmscalable._ext'
DISABLE_ENV_VAR = 'MMSCALABLE_DISABLE_EXT'

# Result of the one import attempt: (module or None, error message or None).
# Importing a shared library cannot be undone, so it is tried once; the
# disable switch is read on every call instead, so that tests and benchmarks
# can toggle it at run time.
_import_result: Optional[tuple] = None


def ext_disabled() -> bool:
    """Whether the environment forces the pure-PyTorch reference ops.

    Returns:
        bool: True when ``MMSCALABLE_DISABLE_EXT`` is set to ``1``.
    """
    return os.environ.get(DISABLE_ENV_VAR, '0') == '1'


def _import_ext() -> tuple:
    global _import_result
    if _import_result is None:
        try:
            _import_result = (importlib.import_module(EXT_MODULE_NAME), None)
        except ImportError as err:
            _import_result = (None, f'{type(err).__name__}: {err}')
    return _import_result


def load_ext() -> Optional[ModuleType]:
    """Return the compiled ops module, or None when it cannot be used.

    Only ``ImportError`` (which covers a missing module and a shared library
    that fails to load) is caught; its message is kept for :func:`ext_info`.

    Returns:
        ModuleType | None: ``mmscalable._ext``, or None if it is missing,
        fails to load, or is disabled by ``MMSCALABLE_DISABLE_EXT=1``.
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


def ext_for(tensor, dtypes) -> Optional[ModuleType]:
    """The compiled ops module if it has kernels for ``tensor``, else None.

    A kernel exists for CPU tensors, and for CUDA tensors when the module
    was built with CUDA, in the given ``dtypes``. Under ``torch.jit.trace``
    and during ONNX export there is none: the tracer would keep the call as
    an opaque Python op, and ONNX has no operator for it, so both trace the
    pure-PyTorch reference instead.

    Args:
        tensor (torch.Tensor): An input of the op.
        dtypes (Sequence[torch.dtype]): The dtypes the kernels are
            instantiated for.

    Returns:
        ModuleType | None: ``mmscalable._ext``, or None.
    """
    import torch
    if (tensor.dtype not in dtypes or torch.jit.is_tracing()
            or torch.onnx.is_in_onnx_export()):
        return None
    ext = load_ext()
    if ext is None:
        return None
    if tensor.device.type == 'cpu':
        return ext
    if tensor.device.type == 'cuda' and ext_compiled_with_cuda(ext):
        return ext
    return None


def ext_info() -> dict:
    """Describe the compiled ops module.

    Returns:
        dict: ``available`` (bool, the module is loaded and not disabled),
        ``cuda`` (bool, it has CUDA kernels), ``ops`` (list of str, the
        functions it exposes), ``error`` (str | None, why it is not
        available).
    """
    module, error = _import_ext()
    if module is not None and ext_disabled():
        module, error = None, f'disabled by {DISABLE_ENV_VAR}=1'
    ops = [] if module is None else sorted(
        name for name in dir(module)
        if not name.startswith('_') and callable(getattr(module, name)))
    return {
        'available': module is not None,
        'cuda': ext_compiled_with_cuda(module),
        'ops': ops,
        'error': error,
    }

