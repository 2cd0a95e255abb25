# Copyright (c) mmscalable contributors. All rights reserved.
"""Training curves and times from mmengine's scalar logs.

The logs are the ``vis_data/scalars.json`` of a run (one JSON record per
logged training iteration and per validation): give the file, the run's
folder (``work_dirs/x/20260101_000000``) or the work dir (its latest run
with scalars). Paths without scalars (a run that stopped before logging)
are skipped with a note. ``plot_curve`` writes ``--out``, by default
``curve_<keys>.png`` next to the first log's scalars.json, and prints the
path it wrote.

Examples::

    python tools/analysis_tools/analyze_logs.py plot_curve \\
        work_dirs/a/20260101_000000 work_dirs/b/20260101_000000 \\
        --keys loss coco/bbox_mAP --legend a b --out curves.png
    python tools/analysis_tools/analyze_logs.py cal_train_time work_dirs/a
"""
import argparse
import json
import os
import os.path as osp
import re
import sys
from typing import Dict, List, Optional, Sequence

sys.path.append(osp.dirname(osp.dirname(osp.abspath(__file__))))  # tools/
import env_check  # noqa: E402,F401  (first: names a missing package)
import numpy as np  # noqa: E402


RUN_DIR = re.compile(r'^\d{8}_\d{6}$')


def _run_scalars(run_dir: str) -> Optional[str]:
    """A run dir's vis_data/scalars.json, if it holds any record."""
    candidate = osp.join(run_dir, 'vis_data', 'scalars.json')
    if osp.isfile(candidate) and osp.getsize(candidate) > 0:
        return candidate
    return None


def scalars_file(path: str) -> str:
    """The scalars.json of ``path``: the file itself, a run dir's
    (``work_dirs/x/20260101_000000``), or, for a work dir, that of its latest
    run with scalars (a run that crashed before logging has none).

    Raises:
        FileNotFoundError: Naming ``path`` and what it lacks.
    """
    if osp.isfile(path):
        return path
    if not osp.isdir(path):
        raise FileNotFoundError(f'log {path} not found')
    found = _run_scalars(path)
    if found:
        return found
    runs = sorted(name for name in os.listdir(path)
                  if RUN_DIR.match(name) and osp.isdir(osp.join(path, name)))
    for run in reversed(runs):
        found = _run_scalars(osp.join(path, run))
        if found:
            return found
    if runs:
        raise FileNotFoundError(
            f'{path}: none of its {len(runs)} runs ({", ".join(runs)}) has '
            'scalars in vis_data/scalars.json (they stopped before logging)')
    raise FileNotFoundError(
        f'{path} has no vis_data/scalars.json and no run folders '
        '(YYYYMMDD_HHMMSS): give a work dir, a run dir or a scalars.json')


def usable_logs(paths: Sequence[str]) -> List[str]:
    """``paths`` without those that have no scalars, each skipped with a
    line on stderr (a glob such as ``work_dirs/x/2026*/`` also matches the
    runs that crashed before logging).

    Raises:
        FileNotFoundError: When none of ``paths`` has scalars.
    """
    usable, problems = [], []
    for path in paths:
        try:
            scalars_file(path)
        except FileNotFoundError as error:
            problems.append(str(error))
            continue
        usable.append(path)
    if not usable:
        raise FileNotFoundError('no scalars to read: ' + '; '.join(problems))
    for problem in problems:
        print(f'skipped {problem}', file=sys.stderr)
    return usable


def load_records(path: str) -> List[dict]:
    records = []
    with open(scalars_file(path)) as f:
        for number, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                records.append(json.loads(line))
            except ValueError as e:
                raise ValueError(f'{path}: line {number} is not JSON: '
                                 f'{e}') from e
    return records


def curve(records: Sequence[dict], key: str) -> Dict[str, np.ndarray]:
    """x (training iteration, or validation step) and y of one key.

    Training records carry the iteration (``iter``); validation records
    only their ``step`` (the epoch, or the iteration of iteration-based
    runs).
    """
    with_key = [r for r in records if key in r]
    if not with_key:
        logged = sorted({k for r in records for k in r} - {'iter', 'step'})
        raise KeyError(f'no record has {key!r} (the records have '
                       f'{", ".join(logged) or "no keys"})')
    records = with_key
    return dict(
        x=np.asarray([r['iter'] if 'iter' in r else r['step']
                      for r in records]),
        y=np.asarray([r[key] for r in records], dtype=float),
        validation=all('iter' not in r for r in records))


def default_curve_file(logs: Sequence[str], keys: Sequence[str]) -> str:
    """Where ``plot_curve`` writes without ``--out``: next to the first
    log's scalars.json (``<run dir>/vis_data/curve_<keys>.png``), so that
    the picture stays with the run it shows, whatever the current folder.
    """
    name = '_'.join(re.sub(r'[^\w.-]+', '-', key) for key in keys)
    return osp.join(osp.dirname(scalars_file(logs[0])), f'curve_{name}.png')


def plot_curve(logs: Sequence[str],
               keys: Sequence[str],
               out: str,
               legend: Optional[Sequence[str]] = None,
               title: Optional[str] = None) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    if legend is not None and len(legend) != len(logs) * len(keys):
        raise ValueError(f'--legend needs {len(logs) * len(keys)} names '
                         f'(logs x keys), got {len(legend)}')
    fig, ax = plt.subplots(figsize=(7, 4))
    index = 0
    for log in logs:
        records = load_records(log)
        for key in keys:
            try:
                c = curve(records, key)
            except KeyError as error:
                raise KeyError(f'{log}: {error.args[0]}') from None
            label = legend[index] if legend else f'{osp.basename(log)} {key}'
            marker = 'o' if c['validation'] else None
            ax.plot(c['x'], c['y'], label=label, marker=marker, linewidth=1)
            index += 1
    ax.set_xlabel('iteration (training) / step (validation)')
    ax.set_ylabel(', '.join(keys))
    if title:
        ax.set_title(title)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def train_time(records: Sequence[dict]) -> Dict[str, float]:
    """Seconds per logged training iteration: mean, std, slowest, fastest."""
    times = np.asarray(
        [r['time'] for r in records if 'iter' in r and 'time' in r])
    if times.size == 0:
        raise KeyError('no training record has a time')
    return dict(
        mean=float(times.mean()),
        std=float(times.std()),
        slowest=float(times.max()),
        fastest=float(times.min()),
        iterations=int(times.size))


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    sub = parser.add_subparsers(dest='command', required=True)
    logs_help = 'scalars.json files, run dirs or work dirs'
    plot = sub.add_parser('plot_curve', help='plot keys over iterations')
    plot.add_argument('logs', nargs='+', help=logs_help)
    plot.add_argument('--keys', nargs='+', default=['loss'])
    plot.add_argument('--legend', nargs='+')
    plot.add_argument('--title')
    plot.add_argument(
        '--out',
        help='picture file (default: curve_<keys>.png next to the first '
        "log's scalars.json)")
    times = sub.add_parser('cal_train_time', help='time per iteration')
    times.add_argument('logs', nargs='+', help=logs_help)
    return parser.parse_args()


def main():
    args = parse_args()
    try:
        args.logs = usable_logs(args.logs)
    except FileNotFoundError as error:
        sys.exit(f'error: {error}')
    if args.command == 'plot_curve':
        out = args.out or default_curve_file(args.logs, args.keys)
        os.makedirs(osp.dirname(osp.abspath(out)), exist_ok=True)
        try:
            plot_curve(args.logs, args.keys, out, args.legend, args.title)
        except (KeyError, ValueError) as error:
            sys.exit(f'error: {error.args[0]}')
        print(f'curves of {", ".join(args.keys)} written to '
              f'{osp.abspath(out)}')
    else:
        for log in args.logs:
            t = train_time(load_records(log))
            print(f'{log}: {t["mean"]:.4f} s/iter on average over '
                  f'{t["iterations"]} logged iterations (std {t["std"]:.4f}, '
                  f'slowest {t["slowest"]:.4f}, fastest {t["fastest"]:.4f})')


if __name__ == '__main__':
    main()
