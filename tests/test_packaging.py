# Copyright (c) mmscalable contributors. All rights reserved.
"""The package build: quiet, and carrying the sources of ``mmscalable._ext``.

The build runs on a copy of the checkout, so that it neither writes into the
checkout nor replaces the links of an editable install under
mmscalable/.mim.
"""
import os
import os.path as osp
import shutil
import subprocess
import sys

import pytest

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
# What setup.py reads, and what it links or copies into mmscalable/.mim.
BUILD_INPUTS = ('setup.py', 'setup.cfg', 'MANIFEST.in', 'README.md',
                'model-index.yml', 'requirements', 'configs', 'tools',
                'mmscalable')
CSRC = osp.join('mmscalable', 'ops', 'csrc')


def _copy_build_inputs(dst):
    ignore = shutil.ignore_patterns('__pycache__', '*.py[cod]', '*.so',
                                    '.mim')
    for name in BUILD_INPUTS:
        src = osp.join(ROOT, name)
        if osp.isdir(src):
            shutil.copytree(src, osp.join(dst, name), ignore=ignore)
        elif osp.exists(src):
            shutil.copyfile(src, osp.join(dst, name))


def _relative_files(root):
    """Paths of the files under ``root``, compiled Python left out."""
    return sorted(
        osp.relpath(osp.join(folder, name), root)
        for folder, _, names in os.walk(root) for name in names
        if '__pycache__' not in folder and not name.endswith('.pyc'))


@pytest.fixture(scope='module')
def build(tmp_path_factory):
    """``setup.py egg_info build_py`` of a copy, without the extension.

    Returns:
        tuple[str, str, str]: The copy, the built package folder and the
        command's output.
    """
    src = str(tmp_path_factory.mktemp('src'))
    _copy_build_inputs(src)
    build_lib = osp.join(src, 'build', 'lib')
    result = subprocess.run(
        [
            sys.executable, 'setup.py', 'egg_info', 'build_py',
            '--build-lib', build_lib
        ],
        cwd=src,
        env=dict(os.environ, MMSCALABLE_WITH_OPS='0'),
        capture_output=True,
        text=True)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-5000:]
    return src, build_lib, output


def test_build_does_not_warn_about_data_folders(build):
    _, _, output = build
    assert 'absent from the `packages` configuration' not in output
    assert 'no files found matching' not in output


def test_build_carries_the_op_sources(build):
    src, build_lib, _ = build
    sources = _relative_files(osp.join(src, CSRC))
    assert any(name.endswith('.cu') for name in sources)
    assert any(name.endswith('.cuh') for name in sources)
    with open(osp.join(src, 'mmscalable.egg-info', 'SOURCES.txt')) as f:
        listed = set(f.read().splitlines())
    assert {osp.join(CSRC, name) for name in sources} <= listed
    assert _relative_files(osp.join(build_lib, CSRC)) == sources


def test_build_carries_the_configs_and_model_index(build):
    _, build_lib, _ = build
    mim = osp.join(build_lib, 'mmscalable', '.mim')
    assert osp.isfile(osp.join(mim, 'model-index.yml'))
    assert _relative_files(osp.join(mim, 'configs')) == _relative_files(
        osp.join(ROOT, 'configs'))
    assert osp.isfile(osp.join(mim, 'tools', 'train.py'))
