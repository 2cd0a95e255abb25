# Copyright (c) mmscalable contributors. All rights reserved.
"""Loading mmengine checkpoints on torch >= 2.6.

torch 2.6 made ``torch.load(weights_only=True)`` the default. mmengine 0.10.7
calls ``torch.load`` without the argument, and its own checkpoints hold the
runner's state next to the weights (message hub history buffers, numpy arrays
and scalars, dataset meta), so resume, ``load_from`` and ``tools/test.py``
fail with an ``UnpicklingError``.

Instead of switching the weights-only guard off globally, the loader below
lists the globals a checkpoint needs and allows them if every one is on an
explicit list of data-only classes and constructors (numpy arrays, scalars
and dtypes, mmengine's history buffer, a few containers). A checkpoint that
needs anything else is refused with an error naming it.
"""
import importlib
import io
import os.path as osp
import pickle
from typing import Any, Iterable, List, Optional

import torch
from mmengine.runner.checkpoint import CheckpointLoader
from mmengine.utils.dl_utils import load_url

TRUSTED_GLOBALS = frozenset({
    # The runner state mmengine saves next to the weights.
    'mmengine.logging.history_buffer.HistoryBuffer',
    'numpy.ndarray',
    'numpy.dtype',
    'numpy._core.multiarray._reconstruct',
    'numpy._core.multiarray.scalar',
    'numpy.core.multiarray._reconstruct',
    'numpy.core.multiarray.scalar',
    # numpy 2 pickles dtype classes as getattr(numpy.dtypes, name); the
    # classes it reaches must be allowed too (added below).
    'builtins.getattr',
    'builtins.set',
    'builtins.frozenset',
    'builtins.slice',
    'builtins.complex',
    'collections.OrderedDict',
    'collections.defaultdict',
    # Official training scripts save their command-line arguments.
    'argparse.Namespace',
})


def _resolve_global(qualified_name: str) -> Any:
    """Import ``module.attr`` (``attr`` may be nested) from its name."""
    module_name, _, attr_path = qualified_name.rpartition('.')
    while module_name:
        try:
            obj = importlib.import_module(module_name)
            break
        except ImportError:
            module_name, _, head = module_name.rpartition('.')
            attr_path = f'{head}.{attr_path}'
    else:
        raise ImportError(f'cannot import {qualified_name}')
    for attr in attr_path.split('.'):
        obj = getattr(obj, attr)
    return obj


def _numpy_dtype_classes() -> List[Any]:
    import numpy as np
    return [
        getattr(np.dtypes, name) for name in dir(np.dtypes)
        if name.endswith('DType')
    ]


def _trusted_globals(names: Iterable[str], source: str) -> List[Any]:
    untrusted = sorted(set(names) - TRUSTED_GLOBALS)
    if untrusted:
        raise pickle.UnpicklingError(
            f'checkpoint {source} needs objects that are not known to hold '
            f'only data: {untrusted}. If you trust this file, load it with '
            'torch.load(weights_only=False) and save its state dict.')
    allowed = [_resolve_global(name) for name in names]
    if any(name.startswith('numpy.') for name in names):
        allowed += _numpy_dtype_classes()
    return allowed


def safe_torch_load(file: Any,
                    map_location: Optional[Any] = None,
                    source: Optional[str] = None) -> Any:
    """``torch.load`` with weights only, extended to mmengine's own state.

    Args:
        file (str | file-like): A path or a seekable binary buffer.
        map_location: As for ``torch.load``.
        source (str, optional): How to name the file in errors.

    Returns:
        The loaded object.
    """
    source = source or (file if isinstance(file, str) else 'from buffer')
    try:
        return torch.load(file, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:
        pass
    if not isinstance(file, str):
        file.seek(0)
    names = torch.serialization.get_unsafe_globals_in_checkpoint(file)
    allowed = _trusted_globals(names, source)
    if not isinstance(file, str):
        file.seek(0)
    with torch.serialization.safe_globals(allowed):
        return torch.load(file, map_location=map_location, weights_only=True)


def _load_from_local(filename: str, map_location=None) -> Any:
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'{filename} can not be found.')
    try:
        return safe_torch_load(filename, map_location=map_location)
    except (RuntimeError, pickle.UnpicklingError, EOFError, ValueError) as err:
        if filename in str(err):
            raise
        # A truncated file or not a checkpoint at all: say which file.
        raise RuntimeError(
            f'{filename} is not a readable PyTorch checkpoint: {err}') from err


def _load_from_http(filename: str, map_location=None, model_dir=None) -> Any:
    # ``load_url`` downloads into the torch hub cache, then loads the file
    # with a bare ``torch.load``; re-read the cached file safely instead.
    try:
        return load_url(
            filename, model_dir=model_dir, map_location=map_location)
    except pickle.UnpicklingError:
        import torch.hub
        cached = osp.join(model_dir or osp.join(torch.hub.get_dir(),
                                                'checkpoints'),
                          osp.basename(filename.split('?')[0]))
        return safe_torch_load(cached, map_location=map_location)


def load_checkpoint_bytes(data: bytes, map_location=None) -> Any:
    """Load a checkpoint held in memory (e.g. read through a file backend)."""
    return safe_torch_load(io.BytesIO(data), map_location=map_location)


def register_checkpoint_loaders() -> None:
    """Replace mmengine's local and http checkpoint loaders (idempotent)."""
    CheckpointLoader.register_scheme(
        prefixes='', loader=_load_from_local, force=True)
    CheckpointLoader.register_scheme(
        prefixes=('http://', 'https://'), loader=_load_from_http, force=True)
