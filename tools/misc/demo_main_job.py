# Copyright (c) mmscalable contributors. All rights reserved.
"""The README's main job on the embedded demo data (CPU, minutes).

For small ScalableViT and GroupMixFormer Mask R-CNNs (mmdet) and UperNets
(mmseg), and a small ScalableViT image classifier (mmpretrain), it
1. generates the demo data if missing (``data/demo_coco``, ``data/demo_ade``,
   ``data/demo_cls``),
2. evaluates the untrained model (the baseline),
3. trains it with ``tools/train.py``,
4. evaluates the trained checkpoint with ``tools/test.py``,
and prints both metrics. It exits non-zero if a model did not learn.
"""
import argparse
import glob
import json
import os
import os.path as osp
import subprocess
import sys
import time

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


def run(cmd):
    print('+', ' '.join(cmd), flush=True)
    subprocess.run(cmd, cwd=ROOT, check=True)


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


def untrained_metrics(config, work_dir):
    """Evaluate the freshly initialised model of ``config``."""
    from mmengine.config import Config

    import mmscalable  # noqa: F401
    from mmscalable.engine.runner import build_runner
    cfg = Config.fromfile(osp.join(ROOT, config))
    cfg.work_dir = work_dir
    runner = build_runner(cfg)
    runner.model.init_weights()
    return runner.test()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--work-dir', default='work_dirs/demo')
    parser.add_argument(
        '--only', choices=[j['name'] for j in JOBS], help='run one job')
    args = parser.parse_args()
    os.chdir(ROOT)
    summary = []
    for job in JOBS:
        if args.only and job['name'] != args.only:
            continue
        work_dir = osp.join(args.work_dir, job['name'])
        start = time.time()
        before = untrained_metrics(job['config'],
                                   osp.join(work_dir, 'untrained'))
        run([sys.executable, 'tools/train.py', job['config'], '--work-dir',
             work_dir])
        with open(osp.join(work_dir, 'last_checkpoint')) as f:
            checkpoint = f.read().strip()
        test_dir = osp.join(work_dir, 'test')
        run([sys.executable, 'tools/test.py', job['config'], checkpoint,
             '--work-dir', test_dir])
        after = latest_test_metrics(test_dir, job['metrics'][0])
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
