# Copyright (c) mmscalable contributors. All rights reserved.
"""The README's main job on the embedded demo data (CPU, minutes).

It generates the demo data if missing (``data/demo_coco``, ``data/demo_ade``,
``data/demo_cls``), then, for small ScalableViT and GroupMixFormer Mask
R-CNNs (mmdet) and UperNets (mmseg), and a small ScalableViT image
classifier (mmpretrain), it
1. evaluates the untrained model (the baseline),
2. trains it with ``tools/train.py``,
3. evaluates the trained checkpoint with ``tools/test.py``,
and prints both metrics. It exits non-zero if a model did not learn.

The full output of each step goes to ``<work dir>/<job>/{untrained,train,
test}.log`` (mmengine's own logs are in the timestamped folders next to
them); the terminal gets one line per job and epoch (per logged iteration
for iteration-based training), per validation and per evaluation, or
everything with ``--verbose``.
"""
import argparse
import contextlib
import glob
import json
import os
import os.path as osp
import re
import subprocess
import sys
import time
import traceback

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
JOBS = [
    dict(
        name='mask-rcnn',
        config='configs/demo/mask-rcnn_scalablevit-tiny_fpn_demo-coco.py',
        metrics=['coco/bbox_mAP', 'coco/bbox_mAP_50', 'coco/segm_mAP'],
        # A trained model must beat the untrained one by this much on the
        # first metric (COCO mAP is in [0, 1]).
        margin=0.3),
    dict(
        name='upernet',
        config='configs/demo/upernet_scalablevit-tiny_demo-ade.py',
        metrics=['mIoU', 'aAcc'],
        margin=20.0),  # mIoU is in percent
    dict(
        name='mask-rcnn-groupmixformer',
        config='configs/demo/mask-rcnn_groupmixformer-tiny_fpn_demo-coco.py',
        metrics=['coco/bbox_mAP', 'coco/bbox_mAP_50', 'coco/segm_mAP'],
        margin=0.3),
    dict(
        name='upernet-groupmixformer',
        config='configs/demo/upernet_groupmixformer-tiny_demo-ade.py',
        metrics=['mIoU', 'aAcc'],
        margin=20.0),
    dict(
        name='classifier',
        config='configs/demo/scalablevit-tiny_demo-cls.py',
        metrics=['accuracy/top1'],
        # In percent; chance is 33.3 on the three balanced classes.
        margin=30.0),
]

# mmengine's LogProcessor lines, e.g. 'Epoch(train)  [3][20/24]  ...',
# 'Iter(train) [ 20/600]  ...' and 'Epoch(val) [24][24/24]    mIoU: ...'.
EPOCH_TRAIN = re.compile(r'Epoch\(train\)\s*\[\s*(\d+)\]\[\s*(\d+)/(\d+)\]')
ITER_TRAIN = re.compile(r'Iter\(train\)\s*\[\s*(\d+)/(\d+)\]')
VAL = re.compile(r'(?:Epoch|Iter)\(val\)')
ETA = re.compile(r'\beta: (\S+)')
# 'loss: 0.8312', not 'loss_cls: ...' or 'decode.loss_ce: ...'.
LOSS = re.compile(r'(?<![\w.])loss: (\S+)')
LOG_TAIL = 20  # lines of a failed step's log shown on the terminal


class StepFailed(RuntimeError):
    """A step of a job failed; ``log`` is the file with its output."""

    def __init__(self, message, log):
        super().__init__(message)
        self.log = log


class Progress:
    """Turns a training run's log lines into one progress line per epoch
    (per logged iteration for iteration-based training) and per validation.

    Args:
        prefix (str): Put before every line, e.g. ``'[2/5] upernet'``.
        metric (str): The validation metric to report, e.g. ``'mIoU'``.
        max_epochs (int, optional): Epochs of the training, for ``3/24``.
        write (callable): Prints one line. Defaults to :func:`say`.
    """

    def __init__(self, prefix, metric, max_epochs=None, write=None):
        self.prefix = prefix
        self.metric = re.compile(r'(?<![\w/.])' + re.escape(metric) +
                                 r': (\S+)')
        self.metric_name = metric
        self.max_epochs = max_epochs
        self.write = write or say
        self.interval = None  # the logging interval, in iterations
        self.done_epochs = set()
        self.pending = None  # (epoch, text) not printed yet

    def feed(self, line):
        """Read one line of the run's output."""
        match = EPOCH_TRAIN.search(line)
        if match:
            self._epoch_line(line, *map(int, match.groups()))
            return
        match = ITER_TRAIN.search(line)
        if match:
            it, total = match.groups()
            self._emit(f'iter {it}/{total}{self._scalars(line)}')
            return
        if VAL.search(line):
            value = self.metric.search(line)
            if value:
                self.flush()
                self._emit(f'val {self.metric_name} {value.group(1)}')

    def flush(self):
        """Print the epoch line still held back (at the end of the run)."""
        if self.pending is not None:
            epoch, text = self.pending
            self.pending = None
            if epoch not in self.done_epochs:
                self.done_epochs.add(epoch)
                self._emit(text)

    def _epoch_line(self, line, epoch, it, total):
        if self.pending is not None and self.pending[0] != epoch:
            self.flush()
        if self.interval is None:
            self.interval = it  # the first logged iteration
        of = f'/{self.max_epochs}' if self.max_epochs else ''
        self.pending = (epoch, f'epoch {epoch}{of}{self._scalars(line)}')
        # The last line mmengine logs in an epoch: print it now rather than
        # when the next epoch logs.
        if it + self.interval > total:
            self.flush()

    @staticmethod
    def _scalars(line):
        text = ''
        loss = LOSS.search(line)
        if loss:
            text += f'  loss {loss.group(1)}'
        eta = ETA.search(line)
        if eta:
            text += f'  eta {eta.group(1)}'
        return text

    def _emit(self, text):
        self.write(f'{self.prefix}  {text}')


def say(line):
    print(line, flush=True)


def run_logged(cmd, log_path, verbose=False, on_line=None):
    """Run ``cmd`` with its output (stdout and stderr) in ``log_path``.

    Args:
        cmd (list[str]): The command, run in the repository root.
        log_path (str): Receives everything the command prints.
        verbose (bool): Also print it here.
        on_line (callable, optional): Called with each line.

    Raises:
        StepFailed: If the command exits with a non-zero status.
    """
    os.makedirs(osp.dirname(log_path) or '.', exist_ok=True)
    # Unbuffered, so that progress comes as the run goes.
    env = dict(os.environ, PYTHONUNBUFFERED='1')
    with open(log_path, 'w') as log:
        log.write('+ ' + ' '.join(cmd) + '\n')
        if verbose:
            say('+ ' + ' '.join(cmd))
        proc = subprocess.Popen(
            cmd,
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors='replace')
        try:
            for line in proc.stdout:
                log.write(line)
                if verbose:
                    sys.stdout.write(line)
                    sys.stdout.flush()
                if on_line is not None:
                    on_line(line)
        finally:
            returncode = proc.wait()
    if returncode != 0:
        raise StepFailed(f'{" ".join(cmd)} exited with status {returncode}',
                         log_path)


class _Tee:
    """A text stream writing to several."""

    def __init__(self, *streams):
        self.streams = streams

    def write(self, text):
        for stream in self.streams:
            stream.write(text)
        return len(text)

    def flush(self):
        for stream in self.streams:
            stream.flush()


def _detach_loggers(stream):
    """Drop the logging handlers that write to ``stream``."""
    from mmengine.logging import MMLogger
    for logger in list(MMLogger._instance_dict.values()):
        for handler in list(logger.handlers):
            if getattr(handler, 'stream', None) is stream:
                logger.removeHandler(handler)


def latest_test_metrics(work_dir, key):
    """Metrics of the newest test run in ``work_dir`` that reports ``key``.

    ``tools/test.py`` writes them as the last line of mmengine's json log.
    """
    logs = sorted(glob.glob(osp.join(work_dir, '*', '*.json')),
                  key=osp.getmtime)
    for log in reversed(logs):
        with open(log) as f:
            lines = [json.loads(line) for line in f if line.strip()]
        if lines and key in lines[-1]:
            return lines[-1]
    raise RuntimeError(f'no test metrics with {key!r} found in {work_dir}')


@contextlib.contextmanager
def captured(log_path, verbose=False):
    """Send what this process prints to ``log_path`` (and here if
    ``verbose``), a traceback included.

    Args:
        log_path (str): Receives the output.
        verbose (bool): Also print it here.
    """
    os.makedirs(osp.dirname(log_path) or '.', exist_ok=True)
    with open(log_path, 'w') as log:
        stream = _Tee(log, sys.stdout) if verbose else log
        try:
            with contextlib.redirect_stdout(stream), \
                    contextlib.redirect_stderr(stream):
                try:
                    yield
                except Exception:
                    traceback.print_exc()
                    raise
        finally:
            # mmengine's console handler took sys.stdout when the runner
            # built its logger.
            _detach_loggers(stream)


def load_config(config, cfg_options=None):
    """``config`` with the ``--cfg-options`` of the job merged in."""
    from mmengine.config import Config, DictAction
    cfg = Config.fromfile(osp.join(ROOT, config))
    if cfg_options:
        action = DictAction(option_strings=[], dest='cfg_options')
        options = argparse.Namespace()
        action(None, options, list(cfg_options))
        cfg.merge_from_dict(options.cfg_options)
    return cfg


def untrained_metrics(config, work_dir, cfg_options=None):
    """Evaluate the freshly initialised model of ``config``."""
    import mmscalable  # noqa: F401
    from mmscalable.engine.runner import build_runner
    cfg = load_config(config, cfg_options)
    cfg.work_dir = work_dir
    runner = build_runner(cfg)
    runner.model.init_weights()
    return runner.test()


def config_max_epochs(config, cfg_options=None):
    """``train_cfg.max_epochs`` of ``config``, or None (iteration-based)."""
    cfg = load_config(config, cfg_options)
    return cfg.get('train_cfg', {}).get('max_epochs')


def run_job(job, index, count, work_dir, verbose, cfg_options=None):
    """Evaluate, train and test one job.

    Returns:
        tuple[dict, dict]: The metrics before and after training.
    """
    prefix = f'[{index}/{count}] {job["name"]}'
    key = job['metrics'][0]
    say(f'{prefix}: {job["config"]}')
    log = osp.join(work_dir, 'untrained.log')
    try:
        # Loading the configs imports the task libraries: their warnings go
        # to the log too.
        with captured(log, verbose):
            max_epochs = config_max_epochs(job['config'], cfg_options)
            before = untrained_metrics(job['config'],
                                       osp.join(work_dir, 'untrained'),
                                       cfg_options)
    except Exception as e:
        raise StepFailed(f'evaluating the untrained model failed: {e!r}',
                         log) from e
    say(f'{prefix}  untrained {key} {before[key]:.3f}')

    progress = Progress(prefix, key, max_epochs)
    options = ['--cfg-options', *cfg_options] if cfg_options else []
    train = [
        sys.executable, 'tools/train.py', job['config'], '--work-dir',
        work_dir, *options
    ]
    run_logged(train, osp.join(work_dir, 'train.log'), verbose, progress.feed)
    progress.flush()
    with open(osp.join(work_dir, 'last_checkpoint')) as f:
        checkpoint = f.read().strip()
    test_dir = osp.join(work_dir, 'test')
    test = [
        sys.executable, 'tools/test.py', job['config'], checkpoint,
        '--work-dir', test_dir, *options
    ]
    run_logged(test, osp.join(work_dir, 'test.log'), verbose)
    after = latest_test_metrics(test_dir, key)
    say(f'{prefix}  trained {key} {after[key]:.3f}')
    return before, after


def log_tail(path, lines=LOG_TAIL):
    try:
        with open(path, errors='replace') as f:
            return ''.join(f.readlines()[-lines:])
    except OSError as e:
        return f'({e})\n'


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--work-dir', default='work_dirs/demo')
    parser.add_argument(
        '--only', choices=[j['name'] for j in JOBS], help='run one job')
    parser.add_argument(
        '--verbose',
        action='store_true',
        help='print the full output of every step (configs, environment, '
        'every logged iteration), not only the progress')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        metavar='KEY=VALUE',
        help='override settings of every job\'s config, as tools/train.py '
        'does (e.g. train_cfg.max_epochs=2 for a quick look; a model may '
        'then not learn enough to pass)')
    args = parser.parse_args()
    os.chdir(ROOT)
    from mmscalable.datasets import ensure_demo_data
    paths = ensure_demo_data(root='data')
    say(f'demo data: {", ".join(paths)}')
    jobs = [j for j in JOBS if not args.only or j['name'] == args.only]
    say(f'full logs: {osp.join(args.work_dir, "<job>")}/{{untrained,train,'
        'test}.log' + ('' if args.verbose else ' (--verbose prints them)'))
    summary = []
    for index, job in enumerate(jobs, 1):
        work_dir = osp.join(args.work_dir, job['name'])
        start = time.time()
        try:
            before, after = run_job(job, index, len(jobs), work_dir,
                                    args.verbose, args.cfg_options)
        except StepFailed as e:
            if not args.verbose:
                say(f'--- the end of {e.log}:\n{log_tail(e.log)}---')
            say(f'FAILED: {job["name"]}: {e}; its full output is in {e.log}')
            sys.exit(1)
        summary.append((job, before, after, time.time() - start))

    print('\n== mmscalable demo: untrained vs trained (embedded data) ==')
    failed = []
    for job, before, after, seconds in summary:
        print(f"{job['name']} ({job['config']}, {seconds / 60:.1f} min):")
        for key in job['metrics']:
            print(f'  {key:18s} untrained {before[key]:8.3f}  '
                  f'trained {after[key]:8.3f}')
        key = job['metrics'][0]
        if after[key] < before[key] + job['margin']:
            failed.append(job['name'])
    if failed:
        print(f'FAILED: {failed} did not learn (see the metrics above)')
        sys.exit(1)
    print('All models learnt.')


if __name__ == '__main__':
    main()
