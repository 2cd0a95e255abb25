#!/usr/bin/env python
# Copyright (c) mmscalable contributors. All rights reserved.
"""Build and install mmscalable and its compiled ops ``mmscalable._ext``.

Environment variables:

- ``MMSCALABLE_WITH_OPS=0``: skip the extension (pure-Python install; every op
  falls back to its PyTorch reference).
- ``FORCE_CUDA=1``: build the CUDA kernels even when no GPU is visible.
- ``TORCH_CUDA_ARCH_LIST``: GPU architectures to build for; with
  ``FORCE_CUDA=1`` and no GPU it defaults to Ampere and Hopper.
- ``MAX_JOBS``: parallel compile jobs (read by torch's ``BuildExtension``).

This file imports neither mmscalable nor mmengine/mmcv, only setuptools and
(for the extension) torch, so it works before the runtime stack is installed.
"""
import glob
import os
import os.path as osp
import platform
import shutil
import sys

from setuptools import find_namespace_packages, setup

ROOT = osp.dirname(osp.abspath(__file__))
PACKAGE_NAME = 'mmscalable'
CSRC_DIR = osp.join(PACKAGE_NAME, 'ops', 'csrc')
# What installs under mmscalable/.mim so that ``mim`` and the installed
# package can find the configs, tools and the model index (``mim search``).
MIM_ENTRIES = ('configs', 'tools', 'model-index.yml')
# Architectures for a FORCE_CUDA build on a machine without a GPU: A100,
# A10/RTX 30xx and H100/H200.
DEFAULT_CUDA_ARCH_LIST = '8.0;8.6;9.0'


def get_version():
    """Read ``__version__`` from mmscalable/version.py without importing the
    package (its ``__init__`` may need dependencies not installed yet).

    Returns:
        str: The version string.
    """
    version_file = osp.join(ROOT, PACKAGE_NAME, 'version.py')
    namespace = {}
    with open(version_file, encoding='utf-8') as f:
        exec(compile(f.read(), version_file, 'exec'), namespace)
    return namespace['__version__']


def parse_requirements(fname):
    """Read requirement specifiers from a requirements file.

    Blank lines, comments (whole-line or trailing) and pip options such as
    ``-r``/``-c``/``--index-url`` are skipped; specifiers are kept as written.

    Args:
        fname (str): Path relative to the repository root.

    Returns:
        list[str]: Requirement specifiers, e.g. ``['mmengine==0.10.7']``.
    """
    path = osp.join(ROOT, fname)
    if not osp.exists(path):
        return []
    requirements = []
    with open(path, encoding='utf-8') as f:
        for line in f:
            line = line.split('#', 1)[0].strip()
            if not line or line.startswith('-'):
                continue
            requirements.append(line)
    return requirements


def readme():
    path = osp.join(ROOT, 'README.md')
    if not osp.exists(path):
        return ''
    with open(path, encoding='utf-8') as f:
        return f.read()


def _remove_path(path):
    """Remove a file, a symlink (not what it points to) or a folder."""
    if osp.islink(path) or osp.isfile(path):
        os.remove(path)
    elif osp.isdir(path):
        shutil.rmtree(path)


def _mim_mode():
    """How the configs and tools reach mmscalable/.mim for this command.

    Returns:
        str | None: ``'symlink'`` for develop / editable installs (edits in
        configs/ show at once), ``'copy'`` for builds of wheels or sdists,
        None for other commands (e.g. ``egg_info``, ``dist_info``,
        ``build_ext``), which leave .mim as it is.
    """
    if 'develop' in sys.argv or 'editable_wheel' in sys.argv:
        # Windows needs admin rights for symlinks.
        return 'copy' if platform.system() == 'Windows' else 'symlink'
    build_commands = ('sdist', 'bdist_wheel', 'build', 'build_py', 'install')
    if any(cmd in sys.argv for cmd in build_commands):
        return 'copy'
    return None


def add_mim_extension():
    """Link or copy configs/, tools/ and model-index.yml into .mim.

    Returns:
        list[str]: The entries that were symlinks before this call and were
        replaced by copies; :func:`restore_mim_links` turns them back after
        the build so that an existing editable install keeps live configs.
    """
    mode = _mim_mode()
    if mode is None:
        return []
    mim_dir = osp.join(ROOT, PACKAGE_NAME, '.mim')
    os.makedirs(mim_dir, exist_ok=True)
    replaced_links = []
    for entry in MIM_ENTRIES:
        src = osp.join(ROOT, entry)
        dst = osp.join(mim_dir, entry)
        if not osp.exists(src):
            continue
        was_link = osp.islink(dst)
        # Stale copies or links from an earlier build go first.
        _remove_path(dst)
        if mode == 'symlink':
            os.symlink(osp.relpath(src, mim_dir), dst)
            continue
        if osp.isdir(src):
            shutil.copytree(
                src,
                dst,
                ignore=shutil.ignore_patterns('__pycache__', '*.pyc'))
        else:
            shutil.copyfile(src, dst)
        if was_link:
            replaced_links.append(entry)
    return replaced_links


def restore_mim_links(entries):
    """Turn the copies made by a wheel build back into symlinks.

    Args:
        entries (list[str]): Names returned by :func:`add_mim_extension`.
    """
    mim_dir = osp.join(ROOT, PACKAGE_NAME, '.mim')
    for entry in entries:
        dst = osp.join(mim_dir, entry)
        _remove_path(dst)
        os.symlink(osp.relpath(osp.join(ROOT, entry), mim_dir), dst)


def _sources(pattern):
    # Paths relative to the root: setuptools refuses absolute source paths
    # in some commands, and relative ones keep build logs short.
    return sorted(
        osp.relpath(p, ROOT)
        for p in glob.glob(osp.join(ROOT, CSRC_DIR, pattern), recursive=True))


def _check_cuda_home(cuda_home):
    """Fail early, with the fix, when CUDA_HOME is not a CUDA toolkit.

    torch guesses CUDA_HOME from the location of ``nvcc`` when the variable
    is unset, which goes wrong for wrapper scripts (e.g. /usr/local/bin/nvcc
    gives /usr/local); the compile would then fail on a missing header.

    Args:
        cuda_home (str | None): torch's ``cpp_extension.CUDA_HOME``.
    """
    if cuda_home is not None and osp.exists(
            osp.join(cuda_home, 'include', 'cuda_runtime.h')):
        return
    hint = ' (e.g. CUDA_HOME=/usr/local/cuda)' if osp.exists(
        '/usr/local/cuda/include/cuda_runtime.h') else ''
    raise RuntimeError(
        'Building the CUDA kernels (FORCE_CUDA=1 or a visible GPU) needs the '
        f'CUDA toolkit, but CUDA_HOME={cuda_home} has no '
        'include/cuda_runtime.h: set CUDA_HOME to the toolkit that matches '
        f'torch.version.cuda{hint}.')


def _pip_cuda_library_include_dirs(cuda_home):
    """Header folders of pip's NVIDIA wheels, when the toolkit lacks them.

    ATen's CUDA headers include the headers of cuSPARSE, cuBLAS and
    cuSOLVER. A minimal toolkit (nvcc and the runtime only) does not ship
    them, but the ``nvidia-*`` wheels that torch's CUDA builds depend on do,
    under ``site-packages/nvidia/<name>/include``.

    Args:
        cuda_home (str): Root of the CUDA toolkit.

    Returns:
        list[str]: Folders to add to the include path (empty when the
        toolkit has the headers or no such wheel is installed).
    """
    headers = ('cusparse.h', 'cublas_v2.h', 'cusolverDn.h')
    if all(
            osp.exists(osp.join(cuda_home, 'include', header))
            for header in headers):
        return []
    try:
        import nvidia  # namespace package of the NVIDIA wheels
    except ImportError:
        return []
    include_dirs = []
    for root in list(getattr(nvidia, '__path__', [])):
        for candidate in sorted(glob.glob(osp.join(root, '*', 'include'))):
            if any(
                    osp.exists(osp.join(candidate, header))
                    for header in headers):
                include_dirs.append(candidate)
    return include_dirs


def get_extensions():
    """Describe the one compiled module, ``mmscalable._ext``.

    CUDA kernels are built when torch sees a GPU or ``FORCE_CUDA=1``;
    otherwise only the C++ (CPU) sources are compiled.

    Returns:
        list: ``[]`` when ``MMSCALABLE_WITH_OPS=0``, else one extension.
    """
    if os.getenv('MMSCALABLE_WITH_OPS', '1') == '0':
        return []
    try:
        import torch
        from torch.utils.cpp_extension import (CUDA_HOME, CppExtension,
                                               CUDAExtension)
    except ImportError as err:
        raise RuntimeError(
            'Building mmscalable._ext needs PyTorch at build time: install '
            'torch first and use `pip install --no-build-isolation`, or set '
            'MMSCALABLE_WITH_OPS=0 for a pure-Python install.') from err

    # The sources are plain C++17. No -std flag is passed: torch's
    # BuildExtension adds the standard its own headers are written for
    # (C++17 in older releases, C++20 in torch 2.13), and forcing an older
    # one makes those headers warn (or fail).
    cxx_flags = ['-O3']
    include_dirs = [
        osp.join(ROOT, CSRC_DIR, 'common'),
    ]
    cpp_sources = _sources('pytorch/*.cpp') + _sources('pytorch/cpu/*.cpp')
    with_cuda = (
        torch.cuda.is_available() or os.getenv('FORCE_CUDA', '0') == '1')
    if not with_cuda:
        print('mmscalable: building mmscalable._ext for CPU only (no GPU '
              'visible; set FORCE_CUDA=1 to compile the CUDA kernels)')
        return [
            CppExtension(
                name=f'{PACKAGE_NAME}._ext',
                sources=cpp_sources,
                include_dirs=include_dirs,
                extra_compile_args={'cxx': cxx_flags})
        ]

    _check_cuda_home(CUDA_HOME)
    include_dirs += _pip_cuda_library_include_dirs(CUDA_HOME)
    if not torch.cuda.is_available() and not os.getenv('TORCH_CUDA_ARCH_LIST'):
        # Without a GPU torch cannot pick the architecture itself and would
        # build for its own long default list (slow); build for the GPUs
        # this project is run on.
        os.environ['TORCH_CUDA_ARCH_LIST'] = DEFAULT_CUDA_ARCH_LIST
    print('mmscalable: building mmscalable._ext with CUDA kernels for '
          f"TORCH_CUDA_ARCH_LIST={os.getenv('TORCH_CUDA_ARCH_LIST', 'auto')}")
    return [
        CUDAExtension(
            name=f'{PACKAGE_NAME}._ext',
            sources=cpp_sources + _sources('pytorch/cuda/*.cu'),
            include_dirs=include_dirs,
            define_macros=[('WITH_CUDA', None)],
            extra_compile_args={
                'cxx': cxx_flags,
                'nvcc': ['-O3'],
            })
    ]


def get_packages():
    """List the packages, the folders of the C++/CUDA sources included.

    The folders under mmscalable/ops/csrc hold no Python, only the sources
    that ``mmscalable._ext`` is compiled from, which the sdist and the
    installed package carry. Namespace discovery lists them as packages, so
    their files (picked by MANIFEST.in) install as their package data:
    setuptools warns about data in a folder that is not a listed package.

    Returns:
        list[str]: ``mmscalable`` and every folder below it, except
        ``__pycache__`` and hidden ones such as ``.mim`` (the data of
        ``mmscalable`` itself).
    """
    return find_namespace_packages(
        include=(PACKAGE_NAME, f'{PACKAGE_NAME}.*'),
        exclude=('*.__pycache__', ))


def get_cmdclass():
    if os.getenv('MMSCALABLE_WITH_OPS', '1') == '0':
        return {}
    from torch.utils.cpp_extension import BuildExtension
    return {'build_ext': BuildExtension}


if __name__ == '__main__':
    replaced_mim_links = add_mim_extension()
    try:
        setup(
            name=PACKAGE_NAME,
            version=get_version(),
            description='Scalable vision-transformer backbones for '
            'OpenMMLab 2.0 (classification, detection, segmentation)',
            long_description=readme(),
            long_description_content_type='text/markdown',
            keywords='computer vision, vision transformer, openmmlab',
            packages=get_packages(),
            include_package_data=True,
            python_requires='>=3.9',
            classifiers=[
                'Development Status :: 4 - Beta',
                'Operating System :: OS Independent',
                'Programming Language :: Python :: 3',
                'Programming Language :: Python :: 3.9',
                'Programming Language :: Python :: 3.10',
                'Programming Language :: Python :: 3.11',
                'Programming Language :: Python :: 3.12',
            ],
            license='Apache-2.0',
            install_requires=parse_requirements('requirements/runtime.txt'),
            extras_require={
                'all':
                parse_requirements('requirements/tests.txt') +
                parse_requirements('requirements/optional.txt'),
                'tests':
                parse_requirements('requirements/tests.txt'),
                'optional':
                parse_requirements('requirements/optional.txt'),
            },
            ext_modules=get_extensions(),
            cmdclass=get_cmdclass(),
            zip_safe=False)
    finally:
        restore_mim_links(replaced_mim_links)
