# Copyright (c) mmscalable contributors. All rights reserved.
"""Evaluate a checkpoint (mmdet, mmseg or mmpretrain config)."""
import argparse
import os
import os.path as osp
import sys

sys.path.append(osp.dirname(osp.abspath(__file__)))  # tools/
import env_check  # noqa: E402,F401  (first: names a missing package)
from mmengine.config import DictAction  # noqa: E402
from mmengine.logging import print_log  # noqa: E402

from mmscalable.compat import (finish_distributed,  # noqa: E402
                               quiet_third_party_deprecations)
from mmscalable.engine.runner import (add_dump_results,  # noqa: E402
                                      add_test_time_augmentation,
                                      add_visualization, build_runner,
                                      load_tool_config, make_config_demo_data)


def parse_args():
    parser = argparse.ArgumentParser(description='Test (and eval) a model')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument(
        '--work-dir', help='the dir to save the evaluation metrics')
    parser.add_argument(
        '--out',
        type=str,
        help='dump the predictions to a pickle file for offline evaluation')
    parser.add_argument(
        '--show-dir',
        help='directory where painted predictions are saved; a relative path '
        'is inside the work dir (mmdet, mmseg and mmpretrain configs alike)')
    parser.add_argument(
        '--show-interval',
        type=int,
        default=1,
        help='with --show-dir, paint every this many test images (default: '
        'every image)')
    parser.add_argument(
        '--tta',
        action='store_true',
        help='test-time augmentation: the config\'s tta_model around its '
        'model and its tta_pipeline (multi-scale and flipped views) for the '
        'test data, as mmdet\'s and mmseg\'s --tta (RetinaNet and ADE20K '
        'configs; mmdet merges no masks)')
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
    if not osp.isfile(args.checkpoint) and '://' not in args.checkpoint:
        raise FileNotFoundError(f'checkpoint {args.checkpoint} not found')
    cfg = load_tool_config(args)
    if args.make_demo_data:
        make_config_demo_data(cfg)
    cfg.load_from = args.checkpoint
    # The weights come from the checkpoint: skip the backbone's pretrained
    # initialization (its file need not exist on the test machine).
    backbone = cfg.model.get('backbone')
    if isinstance(backbone, dict) and isinstance(backbone.get('init_cfg'),
                                                 dict):
        backbone.init_cfg = None
    if args.tta:
        add_test_time_augmentation(cfg)
    if args.show_dir:
        show_dir = add_visualization(cfg, args.show_dir, args.show_interval)
        print_log(f'painted predictions go to {show_dir}', logger='current')
    if args.out:
        add_dump_results(cfg, args.out)

    runner = build_runner(cfg)
    runner.test()
    finish_distributed()


if __name__ == '__main__':
    quiet_third_party_deprecations()
    main()
