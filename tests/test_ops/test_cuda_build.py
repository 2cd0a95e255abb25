"""The CUDA sources compile where nvcc and a CUDA build of torch exist,
also without a GPU (CI): ``FORCE_CUDA=1`` with the default architectures."""
import glob
import os
import os.path as osp
import shutil
import subprocess
import sys

import pytest
import torch

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def _cuda_home():
    """A toolkit folder with bin/nvcc and include/ (CUDA_HOME first)."""
    candidates = [os.environ.get('CUDA_HOME'), '/usr/local/cuda']
    nvcc = shutil.which('nvcc')
    if nvcc:
        candidates.append(osp.dirname(osp.dirname(osp.realpath(nvcc))))
    for home in filter(None, candidates):
        if (osp.isfile(osp.join(home, 'bin', 'nvcc'))
                and osp.isdir(osp.join(home, 'include'))):
            return home
    return None


CUDA_HOME = _cuda_home()


@pytest.mark.slow
@pytest.mark.skipif(
    CUDA_HOME is None or torch.version.cuda is None,
    reason='needs nvcc and a CUDA build of torch')
def test_cuda_sources_compile_for_hopper(tmp_path):
    env = dict(os.environ, FORCE_CUDA='1', CUDA_HOME=CUDA_HOME,
               MAX_JOBS=os.environ.get('MAX_JOBS', '2'))
    # The default architectures are what a user without a GPU gets.
    env.pop('TORCH_CUDA_ARCH_LIST', None)
    result = subprocess.run(
        [sys.executable, 'setup.py', 'build_ext', '-b',
         str(tmp_path / 'lib'), '-t', str(tmp_path / 'build')],
        cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[
        -5000:]
    libs = glob.glob(str(tmp_path / 'lib' / 'mmscalable' / '_ext*.so'))
    assert len(libs) == 1, os.listdir(tmp_path / 'lib')
    # nvcc was called for Ampere and Hopper machine code.
    log = result.stdout + result.stderr
    assert 'nvcc' in log
    for arch in ('80', '86', '90'):
        assert f'arch=compute_{arch},code=sm_{arch}' in log, log[-3000:]
