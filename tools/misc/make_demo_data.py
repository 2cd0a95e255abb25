# Copyright (c) mmscalable contributors. All rights reserved.
"""Generate the embedded demo data sets (no download).

Usage::

    python tools/misc/make_demo_data.py [--root data] [--force]

writes ``<root>/demo_coco`` (COCO instance segmentation),
``<root>/demo_ade`` (ADE20K-style semantic segmentation) and
``<root>/demo_cls`` (ImageNet-style classification), which the configs in
``configs/demo/`` read. The tools do not generate them unless asked to:
run this script once, or give ``tools/train.py``, ``tools/test.py`` or
``tools/analysis_tools/browse_dataset.py`` the option ``--make-demo-data``
(``bash tools/run_demo.sh`` generates them itself). Sets that are already up
to date are kept unless ``--force`` is given.
"""
import argparse
import os.path as osp
import sys
import time

sys.path.append(osp.dirname(osp.dirname(osp.abspath(__file__))))  # tools/
import env_check  # noqa: E402,F401  (first: names a missing package)

try:
    from mmscalable.datasets.demo_data import (DEMO_ADE_DEFAULTS,
                                               DEMO_CLS_DEFAULTS,
                                               DEMO_COCO_DEFAULTS,
                                               ensure_demo_data,
                                               is_demo_data_up_to_date)
except ImportError:  # Run from a checkout that is not installed.
    sys.path.insert(
        0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))
    from mmscalable.datasets.demo_data import (DEMO_ADE_DEFAULTS,
                                               DEMO_CLS_DEFAULTS,
                                               DEMO_COCO_DEFAULTS,
                                               ensure_demo_data,
                                               is_demo_data_up_to_date)


def parse_args(argv=None) -> argparse.Namespace:
    """Parse the command line.

    Args:
        argv (list[str], optional): Arguments; ``sys.argv[1:]`` if None.

    Returns:
        argparse.Namespace: ``root`` and ``force``.
    """
    parser = argparse.ArgumentParser(
        description='Generate the mmscalable demo data sets (no download).')
    parser.add_argument(
        '--root',
        default='data',
        help='parent directory of demo_coco/, demo_ade/ and demo_cls/ '
        '(default: data)')
    parser.add_argument(
        '--force',
        action='store_true',
        help='regenerate even if the data is up to date')
    return parser.parse_args(argv)


def main(argv=None) -> int:
    """Generate the demo data and print where it is.

    Args:
        argv (list[str], optional): Arguments; ``sys.argv[1:]`` if None.

    Returns:
        int: Exit status.
    """
    args = parse_args(argv)
    before = is_demo_data_up_to_date(args.root)
    start = time.perf_counter()
    paths = ensure_demo_data(root=args.root, force=args.force)
    elapsed = time.perf_counter() - start
    sets = [(paths.coco, DEMO_COCO_DEFAULTS, 'images'),
            (paths.ade, DEMO_ADE_DEFAULTS, 'images'),
            (paths.cls, DEMO_CLS_DEFAULTS, 'images per class')]
    for path, params, unit in sets:
        fresh = args.force or not before[osp.basename(path)]
        state = 'generated' if fresh else 'up to date'
        h, w = params['image_size']
        print(f'{path}: {state} ({params["num_train"]} train / '
              f'{params["num_val"]} val {unit}, {h}x{w}, '
              f'seed {params["seed"]})')
    print(f'done in {elapsed:.1f} s')
    return 0


if __name__ == '__main__':
    sys.exit(main())
