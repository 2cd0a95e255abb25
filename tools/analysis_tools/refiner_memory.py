# Copyright (c) mmscalable contributors. All rights reserved.
"""Peak memory and time of Refiner-ViT's fast refined attention against the
reference computation.

``--impl reference`` holds every N x N map; ``--impl fast`` computes the
maps in exact chunks of query rows where one image's maps of a block exceed
its memory budget (``attn_memory_budget``: 256 MiB unless
``--attn-memory-budget-mib`` says otherwise; at 512x512 the maps of
Refiner-ViT-S take 144 MiB, so it chunks only with a smaller budget).

Each case runs in a fresh process; on a GPU it reports the peak of
``torch.cuda.max_memory_allocated``, on the CPU the peak resident memory
above what the process held before the step (with glibc told to return every
freed block of 64 KiB or more, so that the resident size follows the live
tensors). A case that runs out of memory is reported as such.

Example:
    python tools/analysis_tools/refiner_memory.py --arch s \\
        --case infer:512x512:2 --case train:512x512:2 \\
        --impl reference fast --attn-memory-budget-mib 128 \\
        --out docs/refiner_memory.json
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import time
from typing import Optional

# tools/, for env_check
sys.path.append(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import env_check  # noqa: E402,F401  (first: names a missing package)


def _rss_bytes() -> int:
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE')


def run_case(arch: str, impl: str, mode: str, height: int, width: int,
             batch: int, device: str, norm_eval: bool,
             budget_mib: Optional[float]) -> dict:
    """One forward (inference) or forward + backward (training) of the
    backbone with four dense outputs, in this process."""
    import torch

    from mmscalable.models import RefinerViT
    torch.manual_seed(0)
    budget = {} if budget_mib is None else dict(
        attn_memory_budget=int(budget_mib * 2**20))
    model = RefinerViT(
        arch,
        out_indices=(3, 7, 11, 15) if arch == 's' else (7, 15, 23, 31),
        out_type='featmap',
        norm_eval=norm_eval,
        attn_impl=impl,
        **budget).to(device)
    model.train(mode == 'train')
    images = torch.randn(batch, 3, height, width, device=device)
    if device == 'cuda':
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    base = _rss_bytes()
    start = time.perf_counter()
    if mode == 'train':
        outs = model(images)
        sum(out.square().mean() for out in outs).backward()
    else:
        with torch.no_grad():
            model(images)
    if device == 'cuda':
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated()
    else:
        peak = resource.getrusage(
            resource.RUSAGE_SELF).ru_maxrss * 1024 - base
    return dict(
        seconds=round(time.perf_counter() - start, 2),
        peak_gib=round(peak / 2**30, 3))


def parse_case(text: str):
    mode, size, batch = text.split(':')
    if mode not in ('infer', 'train'):
        raise argparse.ArgumentTypeError(
            f'mode must be infer or train: {text}')
    height, width = (int(v) for v in size.split('x'))
    return mode, height, width, int(batch)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--arch', default='s')
    parser.add_argument(
        '--case',
        action='append',
        type=parse_case,
        required=True,
        help='MODE:HxW:BATCH, e.g. train:512x512:2 (repeatable)')
    parser.add_argument(
        '--impl', nargs='+', default=['reference', 'fast'],
        choices=['reference', 'fast'])
    parser.add_argument(
        '--attn-memory-budget-mib',
        type=float,
        help='the fast path chunks the maps beyond this many MiB per block '
        '(default: the backbone\'s, 256)')
    parser.add_argument('--device', default='cpu')
    parser.add_argument(
        '--norm-eval',
        action='store_true',
        help='frozen map BatchNorm statistics in training')
    parser.add_argument('--out', help='JSON file for the results')
    parser.add_argument('--single', help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def run_case_in_child(args, impl: str, mode: str, height: int, width: int,
                      batch: int) -> dict:
    """Run one case in a fresh process (this script with ``--single``).

    Args:
        args (argparse.Namespace): The options of this run.
        impl (str): ``'reference'`` or ``'fast'``.
        mode (str): ``'infer'`` or ``'train'``.
        height (int): Image height.
        width (int): Image width.
        batch (int): Batch size.

    Returns:
        dict: The case and its ``seconds`` and ``peak_gib``, or its
        ``error`` (exit status and last line of the child's stderr).
    """
    cmd = [
        sys.executable, __file__, '--arch', args.arch, '--device',
        args.device, '--case', 'infer:1x1:1', '--single',
        f'{impl},{mode},{height},{width},{batch}'
    ] + (['--norm-eval'] if args.norm_eval else [])
    if args.attn_memory_budget_mib is not None:
        cmd += ['--attn-memory-budget-mib', str(args.attn_memory_budget_mib)]
    # glibc returns freed blocks of 64 KiB or more to the system at once, so
    # that the resident size follows the live tensors.
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_='65536')
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    row = dict(arch=args.arch, impl=impl, mode=mode,
               size=f'{height}x{width}', batch=batch, device=args.device,
               map_norm='frozen' if args.norm_eval else 'batch',
               attn_memory_budget_mib=args.attn_memory_budget_mib)
    if proc.returncode == 0:
        row.update(json.loads(proc.stdout.strip().splitlines()[-1]))
    else:
        tail = (proc.stderr or '').strip().splitlines()[-1:]
        row.update(error=f'exit {proc.returncode}: {" ".join(tail)}')
    return row


def main(argv=None):
    args = parse_args(argv)
    if args.single:  # A child process: one case, JSON on stdout.
        impl, mode, h, w, b = args.single.split(',')
        print(json.dumps(
            run_case(args.arch, impl, mode, int(h), int(w), int(b),
                     args.device, args.norm_eval,
                     args.attn_memory_budget_mib)))
        return

    results = []
    for mode, height, width, batch in args.case:
        for impl in args.impl:
            row = run_case_in_child(args, impl, mode, height, width, batch)
            print(json.dumps(row), flush=True)
            results.append(row)
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(results, f, indent=2)


if __name__ == '__main__':
    main()
