# Copyright (c) mmscalable contributors. All rights reserved.
"""Parameters and FLOPs of configs' models, next to the papers' figures.

Examples::

    # One config at the paper's resolution and counting convention:
    python tools/analysis_tools/get_flops.py \\
        configs/scalablevit/mask-rcnn_scalablevit-s_fpn_1x_coco.py
    # Every config the papers report FLOPs for, as a Markdown table:
    python tools/analysis_tools/get_flops.py --reported --out flops.md
    # Another size, every op counted:
    python tools/analysis_tools/get_flops.py CONFIG --shape 800 1333 \\
        --convention fvcore

See ``mmscalable/analysis/flops.py`` for the conventions and resolutions;
the papers' figures come from the metafiles that ``model-index.yml`` lists.
Every attention is counted on its reference path (the official
computation), so the figure does not depend on the config's ``attn_impl``.
"""
import argparse
import json
import os.path as osp
import sys

sys.path.append(osp.dirname(osp.dirname(osp.abspath(__file__))))  # tools/
import env_check  # noqa: E402,F401  (first: names a missing package)
sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(
    osp.abspath(__file__)))))

from mmscalable.analysis.flops import (  # noqa: E402
    CONVENTIONS, configs_with_reported_flops, count, markdown_table)
from mmscalable.compat import quiet_third_party_deprecations  # noqa: E402


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('configs', nargs='*', help='config files')
    parser.add_argument(
        '--reported',
        action='store_true',
        help='every config whose metafile has the paper\'s FLOPs')
    parser.add_argument(
        '--shape',
        type=int,
        nargs=2,
        metavar=('HEIGHT', 'WIDTH'),
        help='input size (default: the paper\'s for the task)')
    parser.add_argument(
        '--convention',
        choices=CONVENTIONS,
        help='fvcore: every op; mmcv: layers only, no matmuls between '
        'activations (default: the paper\'s for the task)')
    parser.add_argument(
        '--out', help='also write the table (.md) or the records (.json)')
    args = parser.parse_args()
    if not args.configs and not args.reported:
        parser.error('give config files or --reported')
    for config in args.configs:
        if not osp.isfile(config):
            parser.error(f'config {config} not found')
    return args


def main():
    args = parse_args()
    configs = list(args.configs)
    if args.reported:
        configs += configs_with_reported_flops()
    records = []
    for number, config in enumerate(configs, 1):
        # Progress on stderr: each count builds and traces a whole model.
        print(f'[{number}/{len(configs)}] {osp.relpath(config)}',
              file=sys.stderr, flush=True)
        record = count(config, args.shape, args.convention)
        records.append(record)
        print(markdown_table([record]).splitlines()[-1], flush=True)
    table = markdown_table(records)
    print('\n' + table)
    if args.out:
        with open(args.out, 'w') as f:
            if args.out.endswith('.json'):
                json.dump(records, f, indent=1)
            else:
                f.write(table)


if __name__ == '__main__':
    quiet_third_party_deprecations()
    main()
