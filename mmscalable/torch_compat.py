# Copyright (c) mmscalable contributors. All rights reserved.
"""The torch APIs mmscalable uses that not every supported torch has.

mmscalable supports torch 2.1 to 2.13 (``SUPPORTED_VERSIONS`` in
``mmscalable/__init__.py``). Where a newer torch added an API the package
uses, the rest of the package goes through this module, which uses the API
where it exists and falls back where it does not:

- ``torch.library.register_autograd`` (torch 2.4): :func:`register_autograd`
  otherwise registers an autograd kernel of its own for the op, a
  ``torch.autograd.Function`` with the same ``setup_context`` and
  ``backward``, so that ``torch.ops.mmscalable.<op>`` and the public
  functions differentiate as on newer torch (double backward included).
- ``torch.library.register_fake`` (torch 2.4): without it the compiled ops
  have no fake implementation (:data:`HAS_REGISTER_FAKE`), and under
  ``torch.compile`` / ``torch.export`` every op runs its pure-PyTorch
  reference (``mmscalable.ops.has_compiled_kernel``).
- ``torch.compiler.is_compiling`` (torch 2.3): :func:`is_compiling` is
  ``torch._dynamo.is_compiling`` before.
- ``torch.is_autocast_enabled(device_type)`` and
  ``torch.get_autocast_dtype(device_type)`` (torch 2.4):
  :func:`is_autocast_enabled` and :func:`get_autocast_dtype` use the CPU and
  GPU functions of older torch; :func:`autocast` leaves a disabled region's
  dtype to torch there, since torch 2.1's CPU autocast refuses any dtype but
  bfloat16 even when disabled.
- ``torch.amp.GradScaler`` (torch 2.3): :func:`grad_scaler` is
  ``torch.cuda.amp.GradScaler`` before, on the CPU a disabled one (torch 2.1
  autocasts the CPU to bfloat16 only, which needs no loss scaling).
- ``torch.serialization.safe_globals`` and
  ``get_unsafe_globals_in_checkpoint`` (torch 2.5), which
  ``mmscalable.compat.safe_torch_load`` extends torch's weights-only
  loading with: :func:`load_with_allowed_globals` otherwise loads with an
  unpickler that admits torch's own weights-only globals and those the
  caller resolves, and refuses any other.

Nothing here changes torch itself; the fallbacks are only taken on a torch
without the API.
"""
import _compat_pickle
import codecs
import pickle
import types
from typing import Any, Callable, Dict, Optional

import torch

# The numeric release of the running torch, e.g. (2, 1, 2).
TORCH_RELEASE = tuple(
    int(''.join(c for c in part if c.isdigit()) or 0)
    for part in torch.__version__.split('+')[0].split('.')[:3])

HAS_REGISTER_AUTOGRAD = hasattr(torch.library, 'register_autograd')
HAS_REGISTER_FAKE = hasattr(torch.library, 'register_fake')
HAS_SAFE_GLOBALS = (
    hasattr(torch.serialization, 'safe_globals')
    and hasattr(torch.serialization, 'get_unsafe_globals_in_checkpoint'))

if hasattr(torch.compiler, 'is_compiling'):
    is_compiling = torch.compiler.is_compiling
else:
    # torch < 2.3; dynamo knows this function as well and folds it to True
    # in the graphs it traces.
    import torch._dynamo

    is_compiling = torch._dynamo.is_compiling

HAS_DEVICE_AUTOCAST_API = hasattr(torch, 'get_autocast_dtype')


def is_autocast_enabled(device_type: str) -> bool:
    """``torch.is_autocast_enabled(device_type)`` (torch 2.4+).

    Args:
        device_type (str): ``'cpu'`` or ``'cuda'``.

    Returns:
        bool: Whether autocast is on for that device type.
    """
    if HAS_DEVICE_AUTOCAST_API:
        return torch.is_autocast_enabled(device_type)
    if device_type == 'cpu':
        return torch.is_autocast_cpu_enabled()
    return torch.is_autocast_enabled()


def get_autocast_dtype(device_type: str) -> torch.dtype:
    """``torch.get_autocast_dtype(device_type)`` (torch 2.4+).

    Args:
        device_type (str): ``'cpu'`` or ``'cuda'``.

    Returns:
        torch.dtype: The dtype autocast computes in on that device type.
    """
    if HAS_DEVICE_AUTOCAST_API:
        return torch.get_autocast_dtype(device_type)
    if device_type == 'cpu':
        return torch.get_autocast_cpu_dtype()
    return torch.get_autocast_gpu_dtype()


def autocast(device_type: str,
             dtype: Optional[torch.dtype] = None,
             enabled: bool = True) -> torch.autocast:
    """``torch.autocast(device_type, dtype=dtype, enabled=enabled)``; on
    torch < 2.4 a disabled region takes torch's default dtype, as torch 2.1
    refuses to set a CPU autocast dtype other than bfloat16 (even with
    ``enabled=False``).

    Args:
        device_type (str): ``'cpu'`` or ``'cuda'``.
        dtype (torch.dtype, optional): The autocast dtype. Defaults to None
            (torch's default for the device).
        enabled (bool): Whether autocast is on. Defaults to True.

    Returns:
        torch.autocast: The context manager.
    """
    if not enabled and not HAS_DEVICE_AUTOCAST_API:
        dtype = None
    return torch.autocast(device_type, dtype=dtype, enabled=enabled)


def grad_scaler(device: str, **kwargs) -> Any:
    """``torch.amp.GradScaler(device, **kwargs)`` (torch 2.3+).

    Before torch 2.3 the loss scaler is ``torch.cuda.amp.GradScaler``; on
    the CPU it is disabled (its ``scale`` returns the loss, ``step`` steps
    the optimizer), as torch 2.1 has no CPU scaler and autocasts the CPU to
    bfloat16 only.

    Args:
        device (str): ``'cuda'``, ``'cpu'``, ...
        **kwargs: The keyword arguments of ``GradScaler``.

    Returns:
        GradScaler: The scaler.
    """
    if hasattr(torch.amp, 'GradScaler'):
        return torch.amp.GradScaler(device, **kwargs)
    if device != 'cuda':
        kwargs['enabled'] = False
    return torch.cuda.amp.GradScaler(**kwargs)


# Libraries that hold the autograd kernels registered by the fallback of
# register_autograd, one per op namespace: a kernel lives as long as its
# library object.
_autograd_libraries: Dict[str, 'torch.library.Library'] = {}


def _with_defaults(schema, args: tuple, kwargs: dict) -> tuple:
    """The op's arguments in schema order, defaults filled in: the
    dispatcher leaves trailing defaults and keyword-only arguments out of
    ``args``, and the autograd function needs them all positionally."""
    values = list(args)
    for argument in schema.arguments[len(args):]:
        values.append(kwargs.get(argument.name, argument.default_value))
    return tuple(values)


def _register_autograd_function(qualname: str, backward: Callable,
                                setup_context: Optional[Callable]) -> None:
    namespace, name = qualname.split('::', 1)
    overload = getattr(getattr(torch.ops, namespace), name).default

    def forward(*args):
        # Below autograd, or the call would come back to this kernel.
        with torch._C._AutoDispatchBelowAutograd():
            return overload(*args)

    attributes = dict(
        forward=staticmethod(forward), backward=staticmethod(backward))
    if setup_context is not None:
        attributes['setup_context'] = staticmethod(setup_context)
    else:
        attributes['setup_context'] = staticmethod(
            lambda ctx, inputs, output: None)
    function = type(f'{name}_autograd', (torch.autograd.Function, ),
                    attributes)

    def autograd_kernel(*args, **kwargs):
        return function.apply(*_with_defaults(overload._schema, args, kwargs))

    if namespace not in _autograd_libraries:
        _autograd_libraries[namespace] = torch.library.Library(
            namespace, 'IMPL')
    _autograd_libraries[namespace].impl(name, autograd_kernel, 'Autograd')


def register_autograd(qualname: str,
                      backward: Callable,
                      setup_context: Optional[Callable] = None) -> None:
    """``torch.library.register_autograd`` where torch has it (2.4+), else
    an autograd kernel calling the op through a ``torch.autograd.Function``
    with the same ``setup_context`` and ``backward``.

    Args:
        qualname (str): The op, e.g. ``'mmscalable::window_reverse'``; its
            schema must be defined already.
        backward (Callable): ``backward(ctx, *grads)``, one gradient (or
            None) per argument of the op.
        setup_context (Callable, optional): ``setup_context(ctx, inputs,
            output)``. Defaults to None.
    """
    if HAS_REGISTER_AUTOGRAD:
        torch.library.register_autograd(
            qualname, backward, setup_context=setup_context)
        return
    _register_autograd_function(qualname, backward, setup_context)


def register_fake(qualname: str, fake: Callable) -> bool:
    """``torch.library.register_fake`` where torch has it (2.4+).

    Args:
        qualname (str): The op, e.g. ``'mmscalable::window_reverse'``.
        fake (Callable): Its fake implementation.

    Returns:
        bool: Whether it was registered (False on older torch, where
        ``torch.compile`` and ``torch.export`` cannot keep the op).
    """
    if not HAS_REGISTER_FAKE:
        return False
    torch.library.register_fake(qualname)(fake)
    return True


def compile_support_note() -> Optional[str]:
    """Why ``torch.compile`` / ``torch.export`` cannot keep the compiled ops
    as ops on this torch, or None where they can."""
    if HAS_REGISTER_FAKE:
        return None
    return (f'torch {torch.__version__} has no torch.library.register_fake '
            '(torch >= 2.4): torch.compile and torch.export of the custom '
            'ops are unavailable, they trace the PyTorch references instead')


# Checkpoint loading without torch.serialization.safe_globals.


def _torch_data_globals() -> Dict[str, Any]:
    """The globals torch's weights-only unpickler admits on torch < 2.5,
    with every dtype and ``torch.device``, which torch 2.1's list misses."""
    from torch import _weights_only_unpickler
    names = dict(_weights_only_unpickler._get_allowed_globals())
    for attr in dir(torch):
        value = getattr(torch, attr, None)
        if isinstance(value, torch.dtype):
            names[f'torch.{attr}'] = value
    names['torch.device'] = torch.device
    # How protocol 2 pickles bytes (numpy arrays' buffers): data only.
    names['_codecs.encode'] = codecs.encode
    return names


def _allow_list_pickle_module(
        resolve_global: Callable[[str], Any]) -> types.ModuleType:
    """A stand-in for the ``pickle`` module whose unpickler looks every
    global up in torch's data-only list, then asks ``resolve_global``
    (which raises for a name it does not trust)."""
    torch_globals = _torch_data_globals()

    class AllowListUnpickler(pickle.Unpickler):

        def find_class(self, module: str, name: str) -> Any:
            # Python 2 names, as pickle maps them: protocol 2, which
            # torch.save uses, writes __builtin__ for builtins.
            module, name = _compat_pickle.NAME_MAPPING.get((module, name),
                                                           (module, name))
            module = _compat_pickle.IMPORT_MAPPING.get(module, module)
            qualified_name = f'{module}.{name}'
            if qualified_name in torch_globals:
                return torch_globals[qualified_name]
            return resolve_global(qualified_name)

    module = types.ModuleType('mmscalable_allow_list_pickle')
    module.Unpickler = AllowListUnpickler
    module.load = lambda file, **kwargs: AllowListUnpickler(file,
                                                            **kwargs).load()
    module.__version__ = pickle.format_version
    return module


def load_with_allowed_globals(file: Any, map_location: Any,
                              resolve_global: Callable[[str], Any]) -> Any:
    """``torch.load`` admitting torch's data-only globals and those that
    ``resolve_global`` returns, on a torch without
    ``torch.serialization.safe_globals`` (< 2.5).

    Args:
        file (str | file-like): A path or a seekable binary buffer at its
            start.
        map_location: As for ``torch.load``.
        resolve_global (Callable): ``resolve_global('module.name')`` returns
            the object to use for a global, or raises
            ``pickle.UnpicklingError`` naming it.

    Returns:
        The loaded object.
    """
    return torch.load(
        file,
        map_location=map_location,
        pickle_module=_allow_list_pickle_module(resolve_global),
        weights_only=False)
