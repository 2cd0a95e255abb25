"""Two CPU processes over gloo through tools/dist_train.sh and dist_test.sh.

The same launch path as on GPUs (torchrun, ``--launcher pytorch``); see
``mmscalable.compat.prepare_launcher`` for what differs on the CPU.
"""
import glob
import math
import os
import os.path as osp
import pickle
import re
import sys

import pytest
import torch
from test_tools import (DET_CONFIG, GMF_SEG_CONFIG, ROOT, free_port,
                        run_checked)

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures('demo_data')]

# 'Epoch(train) [1][2/2] ... loss: 3.59' or 'Iter(train) [2/4] ... loss: 1.90'
LOSS = re.compile(r'(?:Epoch|Iter)\(train\).*? loss: (\S+)')


def dist_tool(cwd, script, *args):
    """Run tools/<script> (a torchrun wrapper) with this interpreter."""
    env = dict(os.environ)
    env['PATH'] = osp.dirname(sys.executable) + os.pathsep + env['PATH']
    env['PORT'] = str(free_port())
    return run_checked(['bash', osp.join(ROOT, 'tools', script), *args], cwd,
                       env)


def rank_losses(work_dir):
    """{rank: [loss per logged iteration]} from the per-rank log files
    (mmengine writes one per rank at log level DEBUG)."""
    losses = {}
    for log in glob.glob(osp.join(work_dir, '*', '*_rank*.log')):
        rank = int(re.search(r'_rank(\d+)\.log$', log).group(1))
        with open(log) as f:
            losses[rank] = [float(m) for m in LOSS.findall(f.read())]
    return losses


@pytest.mark.parametrize(
    'config,train_options,checkpoint,metric,test_options',
    [(DET_CONFIG, [
        'train_cfg.max_epochs=1', 'train_dataloader.dataset.indices=16',
        'default_hooks.checkpoint.interval=1',
        'val_dataloader.dataset.indices=4'
    ], 'epoch_1.pth', 'coco/bbox_mAP', ['test_dataloader.dataset.indices=6']),
     # SyncBN everywhere, as the GroupMixFormer recipes (over gloo here).
     (GMF_SEG_CONFIG, [
         'train_cfg.max_iters=4', 'train_cfg.val_interval=4',
         'default_hooks.checkpoint.interval=4',
         'val_dataloader.dataset.indices=4',
         'model.backbone.norm_cfg.type=SyncBN',
         'model.decode_head.norm_cfg.type=SyncBN',
         'model.auxiliary_head.norm_cfg.type=SyncBN'
     ], 'iter_4.pth', 'mIoU', ['test_dataloader.dataset.indices=6'])],
    ids=['scalablevit-mask-rcnn', 'groupmixformer-upernet-syncbn'])
def test_two_cpu_processes_train_and_test(tmp_path, config, train_options,
                                          checkpoint, metric, test_options):
    work_dir = tmp_path / 'work'
    out = dist_tool(tmp_path, 'dist_train.sh', config, '2', '--work-dir',
                    str(work_dir), '--cfg-options', 'log_level=DEBUG',
                    'default_hooks.logger.interval=1', *train_options)
    assert 'Distributed training: True' in out
    assert 'CPUDistributedDataParallel' in out
    if 'SyncBN' in ' '.join(train_options):
        assert 'SyncBN layers synchronize over gloo' in out

    # Both ranks trained, each on its own half of the data, with finite
    # losses.
    losses = rank_losses(work_dir)
    assert sorted(losses) == [0, 1]
    for rank, values in losses.items():
        assert values, f'rank {rank} logged no training iteration'
        assert all(math.isfinite(v) for v in values), (rank, values)
    assert losses[0] != losses[1]
    if 'epoch' in checkpoint:
        # 16 images, 4 per batch and process: 2 iterations per epoch.
        assert 'Epoch(train) [1][2/2]' in out

    # Rank 0's checkpoint loads and holds the model.
    state = torch.load(work_dir / checkpoint, weights_only=False)
    assert any(k.startswith('backbone.') for k in state['state_dict'])

    # Two processes evaluate 6 images: the metric and the dumped predictions
    # cover the images of both.
    preds = tmp_path / 'preds.pkl'
    out = dist_tool(tmp_path, 'dist_test.sh', config, str(work_dir /
                                                           checkpoint), '2',
                    '--work-dir', str(tmp_path / 'test'), '--out', str(preds),
                    '--cfg-options', *test_options)
    assert metric in out
    with open(preds, 'rb') as f:
        results = pickle.load(f)
    paths = [r['img_path'] for r in results]
    assert len(paths) == 6 and len(set(paths)) == 6
