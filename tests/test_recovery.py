"""A run killed with SIGKILL between checkpoints and resumed ends with the
same weights as one that was never stopped; AMP training stays finite.
Both through tools/train.py on the embedded data."""
import math
import os.path as osp
import signal
import subprocess
import sys
import time

import pytest
import torch
from tools.analysis_tools import analyze_logs
from test_tools import (CLS_CONFIG, DET_CONFIG, GMF_SEG_CONFIG, ROOT,
                        SEG_CONFIG, SEG_SHORT, tool)

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures('demo_data')]

TRAIN = osp.join(ROOT, 'tools/train.py')
# Epoch-based: three epochs of four iterations, a checkpoint (and
# validation) after each. Iteration-based: 24 iterations, a checkpoint and
# validation every eight. Deterministic algorithms.
DETERMINISTIC = ['randomness.seed=0', 'randomness.deterministic=True']
EPOCH_RUN = [
    'train_cfg.max_epochs=3', 'train_cfg.val_interval=1',
    'train_dataloader.dataset.indices=16', 'val_dataloader.dataset.indices=2',
    'default_hooks.checkpoint.interval=1', 'default_hooks.logger.interval=1',
    *DETERMINISTIC
]
ITER_RUN = [
    'train_cfg.max_iters=24', 'train_cfg.val_interval=8',
    'default_hooks.checkpoint.interval=8', 'default_hooks.logger.interval=1',
    'val_dataloader.dataset.indices=2', *DETERMINISTIC
]


def kill_during(cwd, log_file, marker, *args, timeout=600):
    """Start tools/train.py, SIGKILL it once ``marker`` is in its output."""
    with open(log_file, 'w') as log:
        proc = subprocess.Popen([sys.executable, TRAIN, *args],
                                cwd=cwd,
                                stdout=log,
                                stderr=subprocess.STDOUT)
    deadline = time.monotonic() + timeout
    try:
        while marker not in open(log_file).read():
            assert proc.poll() is None, open(log_file).read()[-3000:]
            assert time.monotonic() < deadline, 'marker never logged'
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    return proc.returncode


@pytest.mark.parametrize(
    'config,options,marker,saved,unsaved,last,resumed,resume', [
        (DET_CONFIG, EPOCH_RUN, 'Epoch(train) [2][2/4]', 'epoch_1.pth',
         'epoch_2.pth', 'epoch_3.pth', 'resumed epoch: 1', '--resume'),
        (DET_CONFIG, EPOCH_RUN, 'Epoch(train) [2][2/4]', 'epoch_1.pth',
         'epoch_2.pth', 'epoch_3.pth', 'resumed epoch: 1', '--resume=auto'),
        (SEG_CONFIG, ITER_RUN, 'Iter(train) [10/24]', 'iter_8.pth',
         'iter_16.pth', 'iter_24.pth', 'iter: 8', '--resume'),
    ],
    ids=['epochs', 'epochs-auto', 'iterations'])
def test_sigkill_then_resume_gives_the_uninterrupted_weights(
        tmp_path, config, options, marker, saved, unsaved, last, resumed,
        resume):
    whole = tmp_path / 'whole'
    tool(tmp_path, TRAIN, config, '--work-dir', str(whole), '--cfg-options',
         *options)

    killed = tmp_path / 'killed'
    # Killed between the first and the second checkpoint.
    returncode = kill_during(tmp_path, tmp_path / 'killed.log', marker,
                             config, '--work-dir', str(killed),
                             '--cfg-options', *options)
    assert returncode == -signal.SIGKILL
    assert (killed / saved).is_file()
    assert not (killed / unsaved).exists()

    out = tool(tmp_path, TRAIN, config, '--work-dir', str(killed), resume,
               '--cfg-options', *options)
    assert resumed in out

    expected = torch.load(whole / last, weights_only=False)
    got = torch.load(killed / last, weights_only=False)
    different = [
        k for k, v in expected['state_dict'].items()
        if not torch.equal(v, got['state_dict'][k])
    ]
    assert not different, different[:5]


def logged_losses(work_dir):
    """The training losses of the run's scalar log."""
    run = sorted(work_dir.glob('*/vis_data'))[-1].parent
    return analyze_logs.curve(analyze_logs.load_records(str(run)),
                              'loss')['y'].tolist()


# Mask R-CNN is not among them: mmcv 2.1.0's CPU NMS takes float32 scores
# only. tests/test_engine.py steps each family's backbone in bfloat16.
@pytest.mark.parametrize('config,options', [
    (CLS_CONFIG, [
        'train_cfg.max_epochs=1', 'train_dataloader.dataset.indices=12',
        'train_dataloader.batch_size=4', 'train_cfg.val_interval=10'
    ]),
    (GMF_SEG_CONFIG, [*SEG_SHORT, 'train_cfg.val_interval=10']),
],
                         ids=['scalablevit-cls', 'groupmixformer-upernet'])
def test_bf16_amp_training_stays_finite(tmp_path, config, options):
    work_dir = tmp_path / 'work'
    out = tool(tmp_path, TRAIN, config, '--work-dir', str(work_dir), '--amp',
               '--cfg-options', 'optim_wrapper.dtype=bfloat16',
               'default_hooks.logger.interval=1', *options)
    assert 'mmscalable.AmpOptimWrapper' in out
    losses = logged_losses(work_dir)
    assert len(losses) >= 3
    assert all(math.isfinite(v) for v in losses), losses
