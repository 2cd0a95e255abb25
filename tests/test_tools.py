"""End to end: tools/train.py, tools/test.py and resume on the embedded data."""
import glob
import json
import os.path as osp
import socket
import subprocess
import sys

import pytest
import torch

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
DET_CONFIG = osp.join(ROOT,
                      'configs/demo/mask-rcnn_scalablevit-tiny_fpn_demo-coco.py')
SEG_CONFIG = osp.join(ROOT, 'configs/demo/upernet_scalablevit-tiny_demo-ade.py')
CLS_CONFIG = osp.join(ROOT, 'configs/demo/scalablevit-tiny_demo-cls.py')
GMF_DET_CONFIG = osp.join(
    ROOT, 'configs/demo/mask-rcnn_groupmixformer-tiny_fpn_demo-coco.py')
GMF_SEG_CONFIG = osp.join(ROOT,
                          'configs/demo/upernet_groupmixformer-tiny_demo-ade.py')
DET_SHORT = [
    'train_dataloader.dataset.indices=8', 'val_dataloader.dataset.indices=4',
    'test_dataloader.dataset.indices=4', 'default_hooks.checkpoint.interval=1',
    'train_cfg.val_interval=1', 'default_hooks.logger.interval=1'
]


def free_port() -> int:
    """A TCP port nobody listens on now."""
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def run_checked(command, cwd, env=None):
    """Run ``command``; its output, after asserting that it succeeded."""
    result = subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return result.stdout + result.stderr


def tool(cwd, *args):
    return run_checked([sys.executable, *args], cwd)


def read_test_metrics(work_dir):
    logs = sorted(glob.glob(osp.join(work_dir, '*', '*.json')),
                  key=osp.getmtime)
    with open(logs[-1]) as f:
        return json.loads(f.read().splitlines()[-1])


@pytest.mark.slow
def test_mask_rcnn_train_test_and_resume(tmp_path):
    work_dir = tmp_path / 'work'
    tool(tmp_path, osp.join(ROOT, 'tools/train.py'), DET_CONFIG, '--work-dir',
         str(work_dir), '--cfg-options', 'train_cfg.max_epochs=1', *DET_SHORT)
    checkpoint = work_dir / 'epoch_1.pth'
    assert checkpoint.is_file()
    # The demo data was generated where the tool ran.
    assert (tmp_path / 'data/demo_coco/annotations/instances_train.json'
            ).is_file()

    # mmengine's own checkpoint (with runner state) loads on torch >= 2.6.
    test_dir = tmp_path / 'test'
    out = tool(tmp_path, osp.join(ROOT, 'tools/test.py'), DET_CONFIG,
               str(checkpoint), '--work-dir', str(test_dir), '--out',
               str(tmp_path / 'preds.pkl'), '--cfg-options', *DET_SHORT)
    assert 'coco/bbox_mAP' in out
    metrics = read_test_metrics(test_dir)
    assert 0 <= metrics['coco/bbox_mAP'] <= 1
    assert (tmp_path / 'preds.pkl').is_file()

    # --resume picks up epoch 1 and trains epoch 2 only.
    out = tool(tmp_path, osp.join(ROOT, 'tools/train.py'), DET_CONFIG,
               '--work-dir', str(work_dir), '--resume', '--cfg-options',
               'train_cfg.max_epochs=2', *DET_SHORT)
    assert 'resumed epoch: 1' in out
    resumed = torch.load(work_dir / 'epoch_2.pth', weights_only=False)
    assert resumed['meta']['epoch'] == 2


SEG_SHORT = [
    'train_cfg.max_iters=4', 'train_cfg.val_interval=4',
    'default_hooks.checkpoint.interval=4', 'default_hooks.logger.interval=1',
    'val_dataloader.dataset.indices=4', 'test_dataloader.dataset.indices=4'
]


@pytest.mark.slow
def test_upernet_train_and_test(tmp_path):
    short = SEG_SHORT
    work_dir = tmp_path / 'work'
    tool(tmp_path, osp.join(ROOT, 'tools/train.py'), SEG_CONFIG, '--work-dir',
         str(work_dir), '--cfg-options', *short)
    checkpoint = work_dir / 'iter_4.pth'
    assert checkpoint.is_file()
    out = tool(tmp_path, osp.join(ROOT, 'tools/test.py'), SEG_CONFIG,
               str(checkpoint), '--work-dir', str(tmp_path / 'test'),
               '--cfg-options', *short)
    assert 'mIoU' in out
    # load_from: a new run starting from those weights.
    tool(tmp_path, osp.join(ROOT, 'tools/train.py'), SEG_CONFIG, '--work-dir',
         str(tmp_path / 'finetune'), '--cfg-options', *short,
         f'load_from={checkpoint}')
    assert (tmp_path / 'finetune' / 'iter_4.pth').is_file()


@pytest.mark.slow
def test_cls_train_and_test(tmp_path):
    short = [
        'train_dataloader.dataset.indices=12',
        'val_dataloader.dataset.indices=6',
        'test_dataloader.dataset.indices=6'
    ]
    work_dir = tmp_path / 'work'
    tool(tmp_path, osp.join(ROOT, 'tools/train.py'), CLS_CONFIG, '--work-dir',
         str(work_dir), '--cfg-options', 'train_cfg.max_epochs=1',
         'train_cfg.val_interval=1', 'default_hooks.checkpoint.interval=1',
         'default_hooks.logger.interval=1', *short)
    checkpoint = work_dir / 'epoch_1.pth'
    assert checkpoint.is_file()
    # The demo data was generated where the tool ran.
    assert (tmp_path / 'data/demo_cls/train/square/000001.jpg').is_file()

    test_dir = tmp_path / 'test'
    out = tool(tmp_path, osp.join(ROOT, 'tools/test.py'), CLS_CONFIG,
               str(checkpoint), '--work-dir', str(test_dir), '--cfg-options',
               *short)
    assert 'accuracy/top1' in out
    metrics = read_test_metrics(test_dir)
    assert 0 <= metrics['accuracy/top1'] <= 100


@pytest.mark.slow
@pytest.mark.parametrize('config,short,checkpoint,metric', [
    (GMF_DET_CONFIG, ['train_cfg.max_epochs=1', *DET_SHORT], 'epoch_1.pth',
     'coco/bbox_mAP'),
    (GMF_SEG_CONFIG, SEG_SHORT, 'iter_4.pth', 'mIoU'),
],
                         ids=['mask-rcnn', 'upernet'])
def test_groupmixformer_train_and_test(tmp_path, config, short, checkpoint,
                                       metric):
    work_dir = tmp_path / 'work'
    tool(tmp_path, osp.join(ROOT, 'tools/train.py'), config, '--work-dir',
         str(work_dir), '--cfg-options', *short)
    assert (work_dir / checkpoint).is_file()
    out = tool(tmp_path, osp.join(ROOT, 'tools/test.py'), config,
               str(work_dir / checkpoint), '--work-dir', str(tmp_path / 'test'),
               '--cfg-options', *short)
    assert metric in out


def test_demo_main_job_reads_the_test_metrics(tmp_path):
    from tools.misc.demo_main_job import JOBS, latest_test_metrics
    for job in JOBS:
        assert osp.isfile(osp.join(ROOT, job['config'])), job['config']
    old, new = tmp_path / '20260101_000000', tmp_path / '20260102_000000'
    for folder, line in ((old, {'mIoU': 1.0}), (new, {'coco/bbox_mAP': 0.5})):
        folder.mkdir()
        (folder / f'{folder.name}.json').write_text(json.dumps(line) + '\n')
    assert latest_test_metrics(str(tmp_path), 'coco/bbox_mAP') == {
        'coco/bbox_mAP': 0.5
    }
    assert latest_test_metrics(str(tmp_path), 'mIoU') == {'mIoU': 1.0}
    with pytest.raises(RuntimeError, match="no test metrics with 'top1'"):
        latest_test_metrics(str(tmp_path), 'top1')
