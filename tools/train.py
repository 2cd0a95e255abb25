# Copyright (c) mmscalable contributors. All rights reserved.
"""Train a model (mmdet, mmseg or mmpretrain config) with mmengine's Runner."""
import argparse
import logging
import os
import os.path as osp
import sys

sys.path.append(osp.dirname(osp.abspath(__file__)))  # tools/
import env_check  # noqa: E402,F401  (first: names a missing package)
from mmengine.config import DictAction  # noqa: E402
from mmengine.logging import print_log  # noqa: E402

from mmscalable.compat import (finish_distributed,  # noqa: E402
                               quiet_third_party_deprecations)
from mmscalable.engine.runner import (build_runner,  # noqa: E402
                                      load_tool_config, make_config_demo_data)


def parse_args():
    parser = argparse.ArgumentParser(description='Train a model')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument(
        '--resume',
        nargs='?',
        type=str,
        const='auto',
        help='resume from this checkpoint, or, without a value, from the '
        'latest checkpoint in the work dir')
    parser.add_argument(
        '--amp',
        action='store_true',
        default=False,
        help='enable automatic-mixed-precision training')
    parser.add_argument(
        '--auto-scale-lr',
        action='store_true',
        help='scale the learning rate to the actual batch size')
    parser.add_argument(
        '--make-demo-data',
        action='store_true',
        help='first generate the embedded demo data the config reads '
        '(data/demo_*), unless it is up to date')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override settings of the config, key=value (xxx=yyy format)')
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args()
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def main():
    args = parse_args()
    cfg = load_tool_config(args)
    if args.make_demo_data:
        make_config_demo_data(cfg)

    if args.amp:
        optim_wrapper = cfg.optim_wrapper.get('type', 'OptimWrapper')
        if optim_wrapper.endswith('AmpOptimWrapper'):
            print_log(
                'AMP training is already enabled in your config.',
                logger='current',
                level=logging.WARNING)
        else:
            if optim_wrapper != 'OptimWrapper':
                raise ValueError('--amp needs an OptimWrapper, the config '
                                 f'has {optim_wrapper}')
            # mmscalable's wrapper: mmengine's, also on the CPU (bfloat16).
            cfg.optim_wrapper.type = 'mmscalable.AmpOptimWrapper'
            cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')

    if args.auto_scale_lr:
        if cfg.get('auto_scale_lr', {}).get('base_batch_size') is None:
            raise RuntimeError('--auto-scale-lr needs `auto_scale_lr.'
                               'base_batch_size` in the config')
        cfg.auto_scale_lr.enable = True

    if args.resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif args.resume is not None:
        cfg.resume = True
        cfg.load_from = args.resume

    runner = build_runner(cfg)
    runner.train()
    finish_distributed()


if __name__ == '__main__':
    quiet_third_party_deprecations()
    main()
