"""mmseg's and mmdet's own tools/train.py and tools/test.py run mmscalable
configs: the configs' ``custom_imports`` import the package, which applies
``mmscalable.compat`` (here: loading mmengine's own checkpoints on
torch >= 2.6 in test.py and in ``load_from``)."""
import importlib
import os.path as osp
import sys

import pytest
from test_tools import (DET_CONFIG, DET_SHORT, SEG_CONFIG, SEG_SHORT,
                        run_checked)

from mmscalable.datasets import ensure_demo_data


def upstream_tool(package: str, name: str) -> str:
    """The path of ``package``'s own ``tools/<name>`` as pip installs it."""
    module = importlib.import_module(package)
    path = osp.join(osp.dirname(module.__file__), '.mim', 'tools', name)
    if not osp.isfile(path):
        pytest.skip(f'{package} is installed without its tools ({path})')
    return path


@pytest.mark.slow
def test_mmseg_tools_train_and_test_a_mmscalable_config(tmp_path):
    ensure_demo_data(root=str(tmp_path / 'data'))
    work_dir = tmp_path / 'work'
    run_checked([
        sys.executable,
        upstream_tool('mmseg', 'train.py'), SEG_CONFIG, '--work-dir',
        str(work_dir), '--cfg-options', *SEG_SHORT
    ], tmp_path)
    checkpoint = work_dir / 'iter_4.pth'
    assert checkpoint.is_file()
    out = run_checked([
        sys.executable,
        upstream_tool('mmseg', 'test.py'), SEG_CONFIG,
        str(checkpoint), '--work-dir',
        str(tmp_path / 'test'), '--cfg-options', *SEG_SHORT
    ], tmp_path)
    assert 'mIoU' in out


@pytest.mark.slow
def test_mmdet_tools_train_and_test_a_mmscalable_config(tmp_path):
    ensure_demo_data(root=str(tmp_path / 'data'))
    work_dir = tmp_path / 'work'
    run_checked([
        sys.executable,
        upstream_tool('mmdet', 'train.py'), DET_CONFIG, '--work-dir',
        str(work_dir), '--cfg-options', 'train_cfg.max_epochs=1', *DET_SHORT
    ], tmp_path)
    checkpoint = work_dir / 'epoch_1.pth'
    assert checkpoint.is_file()
    out = run_checked([
        sys.executable,
        upstream_tool('mmdet', 'test.py'), DET_CONFIG,
        str(checkpoint), '--work-dir',
        str(tmp_path / 'test'), '--cfg-options', *DET_SHORT
    ], tmp_path)
    assert 'coco/bbox_mAP' in out
