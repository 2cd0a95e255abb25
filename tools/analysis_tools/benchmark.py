# Copyright (c) mmscalable contributors. All rights reserved.
"""Benchmark the backbones: reference against fast (and torch.compile).

Writes ``<out>.json`` (every record), ``<out>.md`` (a table) and
``<out>.png`` (speed-ups). The JSON and the table are rewritten after every
record, so that a run cut short keeps what it measured; the chart is drawn at
the end. See ``mmscalable/analysis/benchmark/`` for what is measured and
how. The named models are every variant of every backbone family
(``mmscalable.models.families.FAMILIES``).

A model whose fast and reference paths disagree, or that fails otherwise, is
recorded as such (JSON, and the table's cells and notes) and the run goes on;
the exit status is then 1.

Examples:
    # Every model at three sizes on a GPU (about an hour on one H100).
    python tools/analysis_tools/benchmark.py --models all \\
        --settings 224x224:64 512x512:8 800x1344:2 \\
        --compile default \\
        --out docs/benchmark/h100

    # Whole detectors and segmentors (needs mmdet / mmseg and mmcv's ops).
    python tools/analysis_tools/benchmark.py --settings 800x1344:2 \\
        --models configs/scalablevit/mask-rcnn_scalablevit-s_fpn_1x_coco.py \\
        --out /tmp/det

    # A quick look on the CPU.
    python tools/analysis_tools/benchmark.py --device cpu \\
        --models scalablevit-s groupmixformer-m --settings 224x224:2 \\
        --modes inference --dtypes fp32 --warmup 1 --repeats 3 --out /tmp/cpu

    # Peak CPU memory: each record in a fresh process.
    python tools/analysis_tools/benchmark.py --device cpu --isolate \\
        --models refiner-vit-s --settings 224x224:2 512x512:2 \\
        --dtypes fp32 --out /tmp/cpu-memory
"""
import argparse
import json
import os
import sys

# tools/, for env_check
sys.path.append(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import env_check  # noqa: E402,F401  (first: names a missing package)
sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', '..'))

from mmscalable.analysis.benchmark import (  # noqa: E402
    COMPILE_MODES, COMPILE_VARIANTS, DTYPES, IMPLS, MODES, Setting,
    failed_records, format_record, named_models, run_benchmark, write_outputs)
from mmscalable.compat import quiet_third_party_deprecations  # noqa: E402


def _impl(text: str) -> str:
    """An ``--impls`` value; the fast path under torch.compile is named by
    ``--compile``."""
    for mode, name in COMPILE_VARIANTS.items():
        if text == name:
            raise argparse.ArgumentTypeError(
                f'{text!r} is not an implementation: the fast path under '
                f'torch.compile is timed with --compile {mode}')
    return text


def _parser(models) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        '--models',
        nargs='+',
        default=['all'],
        help=f'"all", some of {list(models)}, or mmdet / mmseg config '
        'files (whole detectors and segmentors)')
    parser.add_argument(
        '--settings',
        nargs='+',
        default=['224x224:64', '512x512:8', '800x1344:2'],
        help='HxW:BATCH values')
    parser.add_argument('--modes', nargs='+', default=list(MODES),
                        choices=MODES)
    parser.add_argument('--dtypes', nargs='+', default=list(DTYPES),
                        choices=list(DTYPES))
    parser.add_argument('--impls', nargs='+', default=list(IMPLS),
                        choices=IMPLS, type=_impl)
    parser.add_argument(
        '--compile',
        nargs='+',
        default=[],
        choices=COMPILE_MODES,
        help='also time the fast path under torch.compile in each of these '
        'modes (reduce-overhead replays CUDA graphs on GPUs); each model is '
        'compiled before it is timed')
    parser.add_argument('--device', default='cuda')
    parser.add_argument('--warmup', type=int, default=5)
    parser.add_argument('--repeats', type=int, default=20)
    parser.add_argument(
        '--peak-tflops',
        type=float,
        default=None,
        help='bf16 dense peak of the device (looked up by GPU name if unset)')
    parser.add_argument('--no-flops', action='store_true',
                        help='skip counting FLOPs')
    parser.add_argument(
        '--isolate',
        action='store_true',
        help='measure each (model, setting, mode, dtype, impl) in a fresh '
        'process, which records its peak resident (CPU) memory, '
        'interpreter and imports included, beside the weights\' size, '
        'and the agreement check of each size in one of its own (a crash '
        'there is recorded and the run goes on); slower (a start and '
        'imports per record)')
    parser.add_argument(
        '--out',
        required=True,
        help='output prefix: writes .json and .md (after every record) and '
        '.png (at the end)')
    parser.add_argument(
        '--render',
        metavar='JSON',
        help='write the table and chart of an earlier run\'s JSON to --out '
        '(.md, .png) instead of running')
    return parser


def parse_args(argv=None):
    models = named_models()
    parser = _parser(models)
    args = parser.parse_args(argv)
    if args.render:
        return args
    if args.models == ['all']:
        args.models = list(models)
    unknown = [
        m for m in args.models
        if m not in models and not (m.endswith('.py') and os.path.isfile(m))
    ]
    if unknown:
        parser.error(f'unknown models {unknown}; known: {list(models)} '
                     'or an mmdet / mmseg config file')
    try:
        args.settings = [Setting.parse(s) for s in args.settings]
    except ValueError as error:
        parser.error(str(error))
    if args.device.startswith('cuda'):
        import torch
        if not torch.cuda.is_available():
            parser.error('--device cuda, but torch sees no GPU '
                         '(use --device cpu)')
    return args


def main(argv=None) -> int:
    """Run the command line; returns the exit status: 1 if a record was
    left unmeasured by a mismatch or an error, else 0."""
    args = parse_args(argv)
    if args.render:
        with open(args.render) as f:
            results = json.load(f)
        for path in write_outputs(results, args.out, with_json=False):
            print(f'wrote {path}')
        return 0
    results = run_benchmark(
        args.models,
        args.settings,
        modes=args.modes,
        dtypes=args.dtypes,
        impls=args.impls,
        compile_modes=args.compile,
        device=args.device,
        warmup=args.warmup,
        repeats=args.repeats,
        peak_flops=(args.peak_tflops * 1e12 if args.peak_tflops else None),
        count_model_flops=not args.no_flops,
        isolate=args.isolate,
        out_prefix=args.out)
    for path in write_outputs(results, args.out):
        print(f'wrote {path}')
    failed = failed_records(results)
    if failed:
        print(f'{len(failed)} records not measured:', file=sys.stderr)
        for record in failed:
            print(format_record(record), file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    quiet_third_party_deprecations()
    sys.exit(main())
