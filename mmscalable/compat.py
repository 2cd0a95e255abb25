# Copyright (c) mmscalable contributors. All rights reserved.
"""Every change mmscalable makes to the behaviour of its dependencies.

Nothing else in the package patches mmengine, mmcv or torch. Each fix names
the upstream problem and the versions it was written for; the versions are
checked when ``mmscalable`` is imported (``mmscalable/__init__.py``).

Applied once by :func:`apply_fixes`, which ``import mmscalable`` calls. Every
entry point imports the package: our tools, and mmdet's, mmseg's and
mmpretrain's own ``tools/train.py`` / ``tools/test.py`` through the configs'
``custom_imports=dict(imports=['mmscalable.models'])``.

1. Checkpoint loading on torch >= 2.6 (mmengine <= 0.10.7, the latest
   release). torch 2.6 made ``torch.load(weights_only=True)`` the default;
   mmengine calls ``torch.load`` without the argument, and its own
   checkpoints hold the runner's state next to the weights (message hub
   history buffers, numpy arrays and scalars, dataset meta), so resume,
   ``load_from`` and testing fail with an ``UnpicklingError``. Instead of
   switching the weights-only guard off, :func:`register_checkpoint_loaders`
   replaces mmengine's local and http loaders with :func:`safe_torch_load`,
   which allows the globals a checkpoint needs if each is on an explicit
   list of data-only classes (:data:`TRUSTED_GLOBALS`), and refuses anything
   else with an error naming it. torch < 2.5 has no
   ``torch.serialization.safe_globals``: there the same list is enforced by
   the unpickler of :func:`mmscalable.torch_compat.load_with_allowed_globals`
   (mmengine's own bare ``torch.load`` works before torch 2.6, but it loads
   anything; the loaders registered here refuse code on every version).
2. ``_base_ = ['mmscalable::...']`` in configs (mmengine 0.10.x). mmengine
   resolves ``pkg::path`` only for the packages of its ``MODULE2PACKAGE``
   table, at ``<installed path>/.mim/configs``, and for an editable (PEP 660)
   install ``get_installed_path`` returns a folder of site-packages that does
   not exist. :func:`register_config_package` adds the table entry and
   answers the package's real folder. mmengine also gives every typed dict
   of a ``pkg::`` base the scope ``pkg`` (``Config._dict_to_config_dict``),
   which is right for mmdet's own configs but not for ours: they are mmdet,
   mmseg and mmpretrain configs, so ``ImageClassifier`` would be looked up
   in the ``mmscalable`` model registry (a ``KeyError``) and a scheduler in
   a registry tree that has no ``mmscalable`` node (a warning). Our configs'
   dicts take the scope their ``default_scope`` names instead, as when the
   file is run itself.

Used per run by the tools (``mmscalable.engine.runner``), not at import:

3. Distributed runs without GPUs (mmengine 0.10.7). The pytorch launcher
   calls ``torch.cuda.set_device``, mmengine's DDP wrapper passes
   ``device_ids`` (which DDP refuses for a CPU module), and torch's SyncBN
   refuses CPU tensors. :func:`prepare_launcher` runs such jobs over gloo with
   ``mmscalable.CPUDistributedDataParallel``; :func:`init_cpu_process_group`
   starts the process group that mmengine then keeps.
4. Leaving the process group (mmengine 0.10.7 leaves it to the interpreter's
   exit): :func:`finish_distributed`.
"""
import functools
import importlib
import io
import os
import os.path as osp
import pickle
import warnings
from datetime import timedelta
from typing import Any, Iterable, List, Optional

import torch

from mmscalable import torch_compat

# 1. Checkpoint loading.

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


def _untrusted(source: str, names: Iterable[str]) -> pickle.UnpicklingError:
    return pickle.UnpicklingError(
        f'checkpoint {source} needs objects that are not known to hold '
        f'only data: {sorted(names)}. If you trust this file, load it with '
        'torch.load(weights_only=False) and save its state dict.')


# The statistics of mmengine's HistoryBuffer, which it pickles as
# getattr(HistoryBuffer, name).
_HISTORY_BUFFER_STATISTICS = ('min', 'max', 'mean', 'current')


def _resolve_trusted_global(qualified_name: str, source: str) -> Any:
    """One global of a checkpoint, if :data:`TRUSTED_GLOBALS` or numpy's
    dtype classes hold it, for loading on torch < 2.5.

    ``builtins.getattr`` is a plain unpickler's ``getattr`` there, which
    would reach any attribute: it is replaced by one that reaches the
    statistics methods of mmengine's ``HistoryBuffer`` only.
    """
    if qualified_name == 'builtins.getattr':
        return functools.partial(_history_buffer_statistic, source=source)
    if qualified_name in TRUSTED_GLOBALS:
        return _resolve_global(qualified_name)
    if qualified_name.startswith('numpy.dtypes.'):
        obj = _resolve_global(qualified_name)
        if obj in _numpy_dtype_classes():
            return obj
    raise _untrusted(source, [qualified_name])


def _history_buffer_statistic(owner: Any, name: str, source: str) -> Any:
    from mmengine.logging import HistoryBuffer
    statistics = set(_HISTORY_BUFFER_STATISTICS).union(
        HistoryBuffer._statistics_methods)
    if owner is HistoryBuffer and name in statistics:
        return getattr(owner, name)
    owner_name = getattr(owner, '__qualname__', type(owner).__qualname__)
    raise _untrusted(source, [f'getattr({owner_name}, {name!r})'])


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
    if not torch_compat.HAS_SAFE_GLOBALS:
        return torch_compat.load_with_allowed_globals(
            file, map_location,
            lambda name: _resolve_trusted_global(name, source))
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
    from mmengine.utils.dl_utils import load_url
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
    from mmengine.runner.checkpoint import CheckpointLoader
    CheckpointLoader.register_scheme(
        prefixes='', loader=_load_from_local, force=True)
    CheckpointLoader.register_scheme(
        prefixes=('http://', 'https://'), loader=_load_from_http, force=True)


# 2. Config paths.

_PACKAGE = 'mmscalable'
PACKAGE_DIR = osp.dirname(osp.abspath(__file__))


def register_config_package() -> None:
    """Make ``mmscalable::`` usable in configs (idempotent)."""
    from mmengine.config import config as config_module
    from mmengine.config import utils as config_utils

    config_utils.MODULE2PACKAGE.setdefault(_PACKAGE, _PACKAGE)
    original = config_module.get_installed_path
    if getattr(original, 'knows_mmscalable', False):
        return

    def get_installed_path(package: str) -> str:
        if package == _PACKAGE:
            return PACKAGE_DIR
        return original(package)

    get_installed_path.knows_mmscalable = True
    config_module.get_installed_path = get_installed_path
    _scope_package_configs_by_their_default_scope(config_module.Config)


def _scope_package_configs_by_their_default_scope(config_class) -> None:
    """Give the typed dicts of an ``mmscalable::`` base the scope of the
    task library the file is written for (its ``default_scope``)."""
    original = config_class.__dict__['_dict_to_config_dict'].__func__
    if getattr(original, 'knows_mmscalable', False):
        return

    def _dict_to_config_dict(cfg, scope=None, has_scope=True):
        # The outermost call gets a whole file's variables; the recursive
        # calls pass the scope chosen here on.
        if scope == _PACKAGE and isinstance(cfg, dict):
            default_scope = cfg.get('default_scope')
            if isinstance(default_scope, str) and default_scope:
                scope = default_scope
        return original(cfg, scope, has_scope)

    _dict_to_config_dict.knows_mmscalable = True
    config_class._dict_to_config_dict = staticmethod(_dict_to_config_dict)


# 3 and 4. Distributed runs without GPUs.


def prepare_launcher(cfg) -> None:
    """Run distributed jobs over gloo, on CPU processes, without a GPU.

    mmengine 0.10.7 assumes a GPU per process for the pytorch launcher: it
    calls ``torch.cuda.set_device`` and gives DDP ``device_ids`` (which DDP
    rejects for a module on the CPU), and torch's SyncBN refuses CPU tensors.
    Here the process group is started by :func:`init_cpu_process_group`
    (mmengine then keeps it) and the model is wrapped by
    ``mmscalable.CPUDistributedDataParallel`` (no device ids, SyncBN over
    gloo).
    """
    from mmengine.config import ConfigDict
    if cfg.launcher == 'none' or torch.cuda.is_available():
        return
    if cfg.launcher != 'pytorch':
        raise RuntimeError(
            f'--launcher {cfg.launcher} needs a GPU per process; without '
            'GPUs, start CPU processes with --launcher pytorch '
            '(tools/dist_train.sh, tools/dist_test.sh)')
    cfg.setdefault('env_cfg', ConfigDict())
    cfg.env_cfg.setdefault('dist_cfg', ConfigDict())
    cfg.env_cfg.dist_cfg.backend = 'gloo'
    wrapper = cfg.get('model_wrapper_cfg')
    if wrapper is None:
        wrapper = ConfigDict(
            broadcast_buffers=False,
            find_unused_parameters=cfg.get('find_unused_parameters', False))
    if wrapper.get('type', 'MMDistributedDataParallel') in (
            'MMDistributedDataParallel', 'mmengine.MMDistributedDataParallel'):
        wrapper.type = 'mmscalable.CPUDistributedDataParallel'
    cfg.model_wrapper_cfg = wrapper


def init_cpu_process_group(cfg) -> None:
    """Join the gloo process group of a CPU run started by torchrun."""
    import torch.distributed as dist
    if (cfg.get('launcher', 'none') != 'pytorch' or torch.cuda.is_available()
            or dist.is_initialized()):
        return
    dist_cfg = cfg.get('env_cfg', {}).get('dist_cfg', {})
    timeout = timedelta(seconds=dist_cfg.get('timeout', 1800))
    dist.init_process_group(
        backend='gloo',
        rank=int(os.environ['RANK']),
        world_size=int(os.environ['WORLD_SIZE']),
        timeout=timeout)


def finish_distributed() -> None:
    """Leave the process group of a distributed run that ended normally.

    mmengine leaves it to the interpreter's exit, where the gloo threads of a
    CPU run were now and then torn down while still running ("terminate
    called without an active exception", SIGABRT after a finished run), and
    NCCL warns about it.
    """
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def quiet_third_party_deprecations() -> None:
    """Keep the pinned stack's deprecation warnings, which a user cannot act
    on, out of a command's output: mmengine and the OpenMMLab libraries
    import ``pkg_resources``, which setuptools deprecates.

    For the command-line tools' entry points; importing mmscalable installs
    no warnings filter.
    """
    warnings.filterwarnings(
        'ignore', message='pkg_resources is deprecated', category=UserWarning)


def apply_fixes() -> None:
    """Apply the import-time fixes 1 and 2 (idempotent).

    Does nothing when mmengine is not installed (the ops need only torch).
    """
    import importlib.util
    if importlib.util.find_spec('mmengine') is None:
        return
    register_checkpoint_loaders()
    register_config_package()
