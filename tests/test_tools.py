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
def test_mask_rcnn_train_test_and_resume(tmp_path, demo_data):
    work_dir = tmp_path / 'work'
    tool(tmp_path, osp.join(ROOT, 'tools/train.py'), DET_CONFIG, '--work-dir',
         str(work_dir), '--cfg-options', 'train_cfg.max_epochs=1', *DET_SHORT)
    checkpoint = work_dir / 'epoch_1.pth'
    assert checkpoint.is_file()

    # mmengine's own checkpoint (with runner state) loads on torch >= 2.6.
    test_dir = tmp_path / 'test'
    out = tool(tmp_path, osp.join(ROOT, 'tools/test.py'), DET_CONFIG,
               str(checkpoint), '--work-dir', str(test_dir), '--out',
               str(tmp_path / 'preds.pkl'), '--show-dir', 'vis',
               '--cfg-options', *DET_SHORT)
    assert 'coco/bbox_mAP' in out
    # A relative --show-dir is inside the work dir; every image is painted.
    assert len(glob.glob(str(test_dir / 'vis' / '*.jpg'))) == 4
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
def test_upernet_train_and_test(tmp_path, demo_data):
    short = SEG_SHORT
    work_dir = tmp_path / 'work'
    tool(tmp_path, osp.join(ROOT, 'tools/train.py'), SEG_CONFIG, '--work-dir',
         str(work_dir), '--cfg-options', *short)
    checkpoint = work_dir / 'iter_4.pth'
    assert checkpoint.is_file()
    out = tool(tmp_path, osp.join(ROOT, 'tools/test.py'), SEG_CONFIG,
               str(checkpoint), '--work-dir', str(tmp_path / 'test'),
               '--show-dir', 'vis', '--cfg-options', *short)
    assert 'mIoU' in out
    # Every image, not every 50th, inside the work dir.
    pictures = glob.glob(
        str(tmp_path / 'test' / 'vis' / 'vis_data' / 'vis_image' / '*.png'))
    assert len(pictures) == 4
    # Multi-scale + flip testing through mmseg's SegTTAModel.
    out = tool(tmp_path, osp.join(ROOT, 'tools/test.py'), SEG_CONFIG,
               str(checkpoint), '--tta', '--work-dir',
               str(tmp_path / 'test_tta'), '--cfg-options', *short)
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
    out = tool(tmp_path, osp.join(ROOT, 'tools/train.py'), CLS_CONFIG,
               '--work-dir', str(work_dir), '--make-demo-data',
               '--cfg-options', 'train_cfg.max_epochs=1',
               'train_cfg.val_interval=1',
               'default_hooks.checkpoint.interval=1',
               'default_hooks.logger.interval=1', *short)
    checkpoint = work_dir / 'epoch_1.pth'
    assert checkpoint.is_file()
    # The pinned stack's deprecation warnings stay out of the output.
    assert 'pkg_resources' not in out
    # --make-demo-data generated the demo data where the tool ran.
    assert (tmp_path / 'data/demo_cls/train/square/000001.jpg').is_file()

    test_dir = tmp_path / 'test'
    out = tool(tmp_path, osp.join(ROOT, 'tools/test.py'), CLS_CONFIG,
               str(checkpoint), '--work-dir', str(test_dir), '--show-dir',
               str(tmp_path / 'painted'), '--show-interval', '2',
               '--cfg-options', *short)
    assert 'accuracy/top1' in out
    # An absolute --show-dir is kept; every second image is painted.
    assert len(glob.glob(str(tmp_path / 'painted' / '*.png'))) == 3
    metrics = read_test_metrics(test_dir)
    assert 0 <= metrics['accuracy/top1'] <= 100


@pytest.mark.slow
@pytest.mark.parametrize('config,short,checkpoint,metric', [
    (GMF_DET_CONFIG, ['train_cfg.max_epochs=1', *DET_SHORT], 'epoch_1.pth',
     'coco/bbox_mAP'),
    (GMF_SEG_CONFIG, SEG_SHORT, 'iter_4.pth', 'mIoU'),
],
                         ids=['mask-rcnn', 'upernet'])
def test_groupmixformer_train_and_test(tmp_path, demo_data, config, short,
                                       checkpoint, metric):
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


def test_tools_stop_without_the_demo_data(tmp_path):
    result = subprocess.run([
        sys.executable,
        osp.join(ROOT, 'tools/train.py'), DET_CONFIG, '--work-dir',
        str(tmp_path / 'work')
    ],
                            cwd=tmp_path,
                            capture_output=True,
                            text=True)
    assert result.returncode != 0
    assert ('data/demo_coco/annotations/instances_train.json does not exist'
            in result.stderr), result.stderr[-3000:]
    assert ('generate it with `python tools/misc/make_demo_data.py` or run '
            'the tool with --make-demo-data') in result.stderr
    assert not (tmp_path / 'data').exists()


# What mmengine 0.10.7 logs (LogProcessor), abridged.
EPOCH_LOG = """\
12/02 10:00:00 - mmengine - INFO - Config:
train_cfg = dict(max_epochs=2, type='EpochBasedTrainLoop', val_interval=2)
12/02 10:00:05 - mmengine - INFO - Epoch(train) [1][10/24]  lr: 1.0000e-04  \
eta: 0:00:40  time: 0.5521  data_time: 0.0123  memory: 0  loss: 3.5912  \
loss_rpn_cls: 0.6900
12/02 10:00:10 - mmengine - INFO - Epoch(train) [1][20/24]  lr: 1.0000e-04  \
eta: 0:00:30  time: 0.5521  data_time: 0.0123  memory: 0  loss: 2.5000  \
loss_rpn_cls: 0.5000
12/02 10:00:15 - mmengine - INFO - Epoch(train) [2][10/24]  lr: 1.0000e-04  \
eta: 0:00:12  time: 0.5521  data_time: 0.0123  memory: 0  loss: 1.2500
12/02 10:00:20 - mmengine - INFO - Epoch(train) [2][20/24]  lr: 1.0000e-04  \
eta: 0:00:02  time: 0.5521  data_time: 0.0123  memory: 0  loss: 0.8312
12/02 10:00:21 - mmengine - INFO - Epoch(train) [2][24/24]  lr: 1.0000e-04  \
eta: 0:00:00  time: 0.5521  data_time: 0.0123  memory: 0  loss: 0.8000
12/02 10:00:22 - mmengine - INFO - Epoch(val) [2][10/24]    eta: 0:00:01  \
time: 0.0800  data_time: 0.0020  memory: 0
12/02 10:00:24 - mmengine - INFO - Epoch(val) [2][24/24]    \
coco/bbox_mAP: 0.8280  coco/bbox_mAP_50: 0.9710  data_time: 0.0021  \
time: 0.0821
"""
ITER_LOG = """\
12/02 10:00:05 - mmengine - INFO - Iter(train) [ 20/600]  base_lr: 1e-04 \
lr: 1e-04  eta: 0:03:10  time: 0.3200  data_time: 0.0100  memory: 0  \
loss: 1.9012  decode.loss_ce: 1.2000  aux.loss_ce: 0.7012
12/02 10:03:15 - mmengine - INFO - Iter(train) [600/600]  base_lr: 1e-04 \
lr: 1e-04  eta: 0:00:00  time: 0.3200  data_time: 0.0100  memory: 0  \
loss: 0.1012  decode.loss_ce: 0.0800  aux.loss_ce: 0.0212
12/02 10:03:20 - mmengine - INFO - Iter(val) [24/24]    aAcc: 98.1000  \
mIoU: 95.1200  mAcc: 97.5000  data_time: 0.0020  time: 0.0500
"""


def test_demo_main_job_progress_lines():
    from tools.misc.demo_main_job import Progress
    lines = []
    progress = Progress('[1/5] mask-rcnn', 'coco/bbox_mAP', 2, lines.append)
    for line in EPOCH_LOG.splitlines(keepends=True):
        progress.feed(line)
    progress.flush()
    assert lines == [
        '[1/5] mask-rcnn  epoch 1/2  loss 2.5000  eta 0:00:30',
        '[1/5] mask-rcnn  epoch 2/2  loss 0.8312  eta 0:00:02',
        '[1/5] mask-rcnn  val coco/bbox_mAP 0.8280',
    ]
    lines.clear()
    progress = Progress('[2/5] upernet', 'mIoU', None, lines.append)
    for line in ITER_LOG.splitlines(keepends=True):
        progress.feed(line)
    progress.flush()
    assert lines == [
        '[2/5] upernet  iter 20/600  loss 1.9012  eta 0:03:10',
        '[2/5] upernet  iter 600/600  loss 0.1012  eta 0:00:00',
        '[2/5] upernet  val mIoU 95.1200',
    ]


@pytest.mark.slow
def test_demo_main_job_prints_progress_and_the_table(tmp_path):
    work_dir = tmp_path / 'demo'
    # Two of the 30 epochs: the plumbing, not the learning (that is what
    # `bash tools/run_demo.sh` shows).
    result = subprocess.run([
        sys.executable,
        osp.join(ROOT, 'tools/misc/demo_main_job.py'), '--only', 'classifier',
        '--work-dir',
        str(work_dir), '--cfg-options', 'train_cfg.max_epochs=2',
        'train_cfg.val_interval=2', 'default_hooks.checkpoint.interval=2'
    ],
                            capture_output=True,
                            text=True)
    out = result.stdout
    lines = out.splitlines()
    # Exit 0 if the model learnt in two epochs, else 1, saying so.
    learnt = lines[-1] == 'All models learnt.'
    assert result.returncode == (0 if learnt else 1), (
        out[-3000:] + result.stderr[-3000:])
    if not learnt:
        assert lines[-1] == ("FAILED: ['classifier'] did not learn (see the "
                             'metrics above)')
    # Progress, not the configs and environment (those are in the logs).
    assert len(lines) < 60, out
    assert '[1/1] classifier  untrained accuracy/top1 ' in out
    for epoch in (1, 2):
        assert f'[1/1] classifier  epoch {epoch}/2  loss ' in out
    assert '[1/1] classifier  val accuracy/top1 ' in out
    assert '[1/1] classifier  trained accuracy/top1 ' in out
    table = lines.index(
        '== mmscalable demo: untrained vs trained (embedded data) ==')
    assert lines[table + 1].startswith(
        'classifier (configs/demo/scalablevit-tiny_demo-cls.py, ')
    assert lines[table + 2].startswith('  accuracy/top1      untrained ')
    for step in ('untrained', 'train', 'test'):
        log = (work_dir / f'classifier/{step}.log').read_text()
        assert 'mmengine - INFO' in log, step
    assert 'Epoch(train)' in (work_dir / 'classifier/train.log').read_text()


def test_demo_main_job_logs_and_failures(tmp_path, monkeypatch, capsys):
    from mmengine.logging import MMLogger

    from tools.misc import demo_main_job as job
    log = tmp_path / 'job/train.log'
    lines = []
    with pytest.raises(job.StepFailed, match='exited with status 3') as e:
        job.run_logged([
            sys.executable, '-c',
            'import sys; print("to stdout"); print("to stderr", '
            'file=sys.stderr); sys.exit(3)'
        ], str(log), on_line=lines.append)
    assert e.value.log == str(log)
    assert 'to stdout' in log.read_text() and 'to stderr' in log.read_text()
    assert sorted(lines) == ['to stderr\n', 'to stdout\n']
    assert capsys.readouterr().out == ''

    # In this process: mmengine's console goes to the log (and here with
    # --verbose), and no longer once the step is over.
    for verbose in (False, True):
        log = tmp_path / f'untrained-{verbose}.log'
        with job.captured(str(log), verbose):
            logger = MMLogger.get_instance(f'demo-{verbose}')
            logger.info('logged line')
        assert 'logged line' in log.read_text()
        assert ('logged line' in capsys.readouterr().out) == verbose
        logger.info('after the step')
        assert 'after the step' not in log.read_text()

    def failing_job(job_, index, count, work_dir, verbose, cfg_options):
        log = osp.join(work_dir, 'train.log')
        with open(log, 'w') as f:
            f.write('many lines\n' * 30 + 'Traceback: the reason\n')
        raise job.StepFailed('tools/train.py exited with status 1', log)

    import mmscalable.datasets
    monkeypatch.setattr(job, 'run_job', failing_job)
    monkeypatch.setattr(mmscalable.datasets, 'ensure_demo_data',
                        lambda root: [f'{root}/demo_coco'])
    monkeypatch.chdir(tmp_path)  # main() changes it: restored afterwards
    monkeypatch.setattr(
        sys, 'argv',
        ['demo_main_job.py', '--only', 'upernet', '--work-dir',
         str(tmp_path)])
    (tmp_path / 'upernet').mkdir()
    with pytest.raises(SystemExit) as exit_:
        job.main()
    assert exit_.value.code == 1
    out = capsys.readouterr().out
    assert out.count('many lines') == job.LOG_TAIL - 1
    assert 'Traceback: the reason' in out
    assert (f'FAILED: upernet: tools/train.py exited with status 1; its full '
            f'output is in {tmp_path}/upernet/train.log') in out
    assert 'All models learnt.' not in out
