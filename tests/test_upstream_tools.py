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


def upstream_tool(package: str, name: str) -> str:
    """The path of ``package``'s own ``tools/<name>`` as pip installs it."""
    module = importlib.import_module(package)
    path = osp.join(osp.dirname(module.__file__), '.mim', 'tools', name)
    if not osp.isfile(path):
        pytest.skip(f'{package} is installed without its tools ({path})')
    return path


@pytest.mark.slow
@pytest.mark.parametrize('package,config,options,checkpoint,metric', [
    ('mmseg', SEG_CONFIG, SEG_SHORT, 'iter_4.pth', 'mIoU'),
    ('mmdet', DET_CONFIG, ['train_cfg.max_epochs=1', *DET_SHORT],
     'epoch_1.pth', 'coco/bbox_mAP'),
])
def test_library_tools_train_and_test_a_mmscalable_config(
        tmp_path, demo_data, package, config, options, checkpoint, metric):
    # A lab's config inheriting ours by path (the route docs/get_started.md
    # gives for these tools; they cannot read ``mmscalable::``).
    lab_config = tmp_path / 'lab.py'
    lab_config.write_text(f'_base_ = [{config!r}]\n')
    config = str(lab_config)
    work_dir = tmp_path / 'work'
    run_checked([
        sys.executable,
        upstream_tool(package, 'train.py'), config, '--work-dir',
        str(work_dir), '--cfg-options', *options
    ], tmp_path)
    checkpoint = work_dir / checkpoint
    assert checkpoint.is_file()
    out = run_checked([
        sys.executable,
        upstream_tool(package, 'test.py'), config,
        str(checkpoint), '--work-dir',
        str(tmp_path / 'test'), '--cfg-options', *options
    ], tmp_path)
    assert metric in out
