# Copyright (c) mmscalable contributors. All rights reserved.
"""The project's CUDA kernels on the CPU, for the tests.

:func:`load` compiles ``emulated_kernels.cpp`` (the kernel headers of
``mmscalable/ops/csrc/common/cuda`` under the emulation of
``cuda_emulation.h``) with the host compiler and returns the module. The
build is cached under a name made of a hash of every source it reads, so an
edited kernel is what runs, and an unchanged checkout compiles once.
"""
import functools
import hashlib
import os
import os.path as osp

HERE = osp.dirname(osp.abspath(__file__))
ROOT = osp.dirname(osp.dirname(HERE))
CSRC = osp.join(ROOT, 'mmscalable', 'ops', 'csrc')
CACHE_ENV_VAR = 'MMSCALABLE_EMULATION_CACHE'
# Optimised enough that the kernels' loops are quick, without the
# reassociation that would hide a difference in summation order.
CFLAGS = ['-O2', '-g0']


def _sources():
    """Every file the build reads: the emulation and the kernel headers."""
    files = [
        osp.join(HERE, 'emulated_kernels.cpp'),
        osp.join(HERE, 'cuda_emulation.h')
    ]
    for folder, _, names in sorted(os.walk(osp.join(CSRC, 'common'))):
        files += [osp.join(folder, name) for name in sorted(names)]
    return files


def source_digest(flags=CFLAGS) -> str:
    """A hash of the sources, the flags and the torch build."""
    import torch
    digest = hashlib.sha256()
    for path in _sources():
        digest.update(osp.relpath(path, ROOT).encode())
        with open(path, 'rb') as f:
            digest.update(f.read())
    digest.update(' '.join(flags).encode())
    digest.update(torch.__version__.encode())
    return digest.hexdigest()[:16]


@functools.lru_cache(maxsize=None)
def load(barriers: bool = True):
    """Compile (or reuse) and import the emulated kernels.

    Args:
        barriers (bool): False builds the kernels with every
            ``__syncthreads()`` removed, to check that the tests notice.

    Returns:
        ModuleType: ``refined_attention_forward``, ``..._backward``,
        ``refined_attention_plan``, ``group_mix_forward``,
        ``group_mix_backward``, ``group_mix_tile_channels`` and
        ``window_op`` (see ``emulated_kernels.cpp``).
    """
    from torch.utils.cpp_extension import load as load_extension
    flags = CFLAGS + ([] if barriers else
                      ['-DMMSCALABLE_EMULATION_WITHOUT_BARRIERS'])
    name = f'mmscalable_emulated_{source_digest(flags)}'
    cache = os.environ.get(
        CACHE_ENV_VAR,
        osp.join(
            osp.expanduser('~'), '.cache', 'mmscalable', 'cuda_emulation'))
    build_dir = osp.join(cache, name)
    os.makedirs(build_dir, exist_ok=True)
    return load_extension(
        name=name,
        sources=[osp.join(HERE, 'emulated_kernels.cpp')],
        extra_include_paths=[CSRC, osp.join(CSRC, 'common'), HERE],
        extra_cflags=flags,
        build_directory=build_dir,
        verbose=False)
