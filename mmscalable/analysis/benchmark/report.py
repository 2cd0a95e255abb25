# Copyright (c) mmscalable contributors. All rights reserved.
"""The outputs of a run: the JSON of every record, a Markdown table (one row
per model, setting, mode and dtype, the variants side by side) and a chart
of the speed-ups over the reference.

The table and the chart read only the JSON-ready results, so that an
earlier run's JSON renders again (``--render``).
"""
import dataclasses
import json
import os
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from .models import IMPLS
from .records import COMPILE_VARIANTS, backends_text, variant

# The report's columns, in order: the implementations, then the fast path
# under each torch.compile mode.
VARIANTS = IMPLS + tuple(COMPILE_VARIANTS.values())


def _group(records: Iterable[dict]) -> Dict[Tuple, Dict[str, dict]]:
    rows: Dict[Tuple, Dict[str, dict]] = {}
    for r in records:
        key = (r['model'], r['setting'], r['mode'], r['dtype'])
        rows.setdefault(key, {})[variant(r)] = r
    return rows


def speedups(results: dict) -> List[dict]:
    """Per (model, setting, mode, dtype): fast / reference throughput and
    memory ratios, and compiled fast / reference where it ran
    (``compile_speedup``, ``graphs_speedup``, ...)."""
    out = []
    for (model, setting, mode, dtype), by_variant in _group(
            results['records']).items():
        ref = by_variant.get('reference')
        row = dict(model=model, setting=setting, mode=mode, dtype=dtype)
        for name in ('fast', *COMPILE_VARIANTS.values()):
            r = by_variant.get(name)
            ok = (ref is not None and r is not None
                  and ref.get('status') == r.get('status') == 'ok')
            row[f'{name}_speedup'] = (
                r['images_per_s'] / ref['images_per_s'] if ok else None)
            row[f'{name}_memory_ratio'] = (
                r['peak_memory_mib'] / ref['peak_memory_mib']
                if ok and ref.get('peak_memory_mib') else None)
        out.append(row)
    return out


def _cell(record: Optional[dict], key: str, fmt: str) -> str:
    if record is None:
        return '-'
    if record.get('status') != 'ok':
        return record.get('status', '?')
    value = record.get(key)
    return '-' if value is None else format(value, fmt)


def _sdpa_cell(record: Optional[dict]) -> str:
    if record is None or record.get('status') != 'ok':
        return '-'
    return backends_text(record.get('sdpa_backends')) or 'none'


def _failure_notes(records: Sequence[dict]) -> List[str]:
    """One line per (model, setting, status, reason) left unmeasured."""
    notes = {}
    for r in records:
        if r.get('status') != 'ok' and r.get('error'):
            key = (r['model'], r['setting'], r['status'], r['error'])
            notes.setdefault(
                key, []).append(f"{r['mode']} {r['dtype']} {variant(r)}")
    lines = []
    for (model, setting, status, reason), which in notes.items():
        lines.append(f'- {model} {setting} ({len(which)} records): '
                     f'{status}: {reason}')
    return lines


@dataclasses.dataclass
class _Columns:
    """The columns of a table. Those that a run cannot fill are left out
    (GPU memory on a CPU, peak RSS without isolation, SDPA where nothing
    ran it, and the columns that earlier versions did not record).

    Args:
        variants (list[str]): The variants timed, of :data:`VARIANTS`.
        memory (bool): Peak GPU memory was measured.
        fraction (bool): The fraction of the bf16 peak was computed.
        matmul (bool): The fraction of the measured matmul throughput was
            computed.
        weights (bool): The weights' size was recorded.
        rss (bool): Peak resident memory was measured.
        sdpa (list[str]): The variants whose records ran SDPA.
    """
    variants: List[str]
    memory: bool
    fraction: bool
    matmul: bool
    weights: bool
    rss: bool
    sdpa: List[str]

    @classmethod
    def of(cls, records: Sequence[dict]) -> '_Columns':
        variants = [
            v for v in VARIANTS if any(variant(r) == v for r in records)
        ]

        def recorded(key):
            return any(r.get(key) is not None for r in records)

        return cls(
            variants=variants,
            memory=recorded('peak_memory_mib'),
            fraction=recorded('peak_fraction'),
            matmul=recorded('matmul_fraction'),
            weights=recorded('weights_mib'),
            rss=recorded('peak_rss_mib'),
            sdpa=[
                v for v in variants if any(
                    variant(r) == v and r.get('sdpa_backends')
                    for r in records)
            ])

    @property
    def ratios(self) -> List[str]:
        """The variants with a ratio to the reference."""
        return ['fast'] + [
            v for v in COMPILE_VARIANTS.values() if v in self.variants
        ]

    def header(self) -> List[str]:
        variants = self.variants
        header = ['model', 'HxW:batch', 'mode', 'dtype', 'GFLOPs']
        header += [f'{v} img/s' for v in variants]
        header += [f'{v} ms' for v in variants]
        header += ['weights MiB'] if self.weights else []
        header += [f'{v} peak MiB' for v in variants] if self.memory else []
        header += [f'{v} peak RSS MiB' for v in variants] if self.rss else []
        header += [f'{v} / ref' for v in self.ratios]
        header += ['fast % bf16 peak'] if self.fraction else []
        header += ['fast % matmul'] if self.matmul else []
        header += [f'{v} SDPA' for v in self.sdpa]
        return header


def _row(key: Tuple, by_variant: Dict[str, dict], columns: _Columns,
         ratios: dict) -> List[str]:
    """The cells of one (model, setting, mode, dtype)."""
    variants = columns.variants
    gflops = next(iter(by_variant.values())).get('gflops_per_image')
    cells = list(key) + [f'{gflops:.2f}' if gflops else '-']
    cells += [_cell(by_variant.get(v), 'images_per_s', '.1f')
              for v in variants]
    cells += [_cell(by_variant.get(v), 'latency_ms', '.2f') for v in variants]
    if columns.weights:
        weights = next((r['weights_mib'] for r in by_variant.values()
                        if r.get('weights_mib') is not None), None)
        cells.append('-' if weights is None else f'{weights:.1f}')
    if columns.memory:
        cells += [
            _cell(by_variant.get(v), 'peak_memory_mib', '.0f')
            for v in variants
        ]
    if columns.rss:
        cells += [
            _cell(by_variant.get(v), 'peak_rss_mib', '.0f') for v in variants
        ]
    for name in columns.ratios:
        speedup = ratios[f'{name}_speedup']
        cells.append('-' if speedup is None else f'{speedup:.2f}x')
    if columns.fraction:
        fraction = (by_variant.get('fast') or {}).get('peak_fraction')
        cells.append('-' if fraction is None else f'{100 * fraction:.1f}%')
    if columns.matmul:
        fraction = (by_variant.get('fast') or {}).get('matmul_fraction')
        cells.append('-' if fraction is None else f'{100 * fraction:.1f}%')
    cells += [_sdpa_cell(by_variant.get(v)) for v in columns.sdpa]
    return cells


def _matmul_note(throughputs: Optional[Dict[str, float]]) -> str:
    """What the '% matmul' column is a fraction of."""
    if not throughputs:
        return ''
    measured = ', '.join(f'{dtype} {flops / 1e9:.0f} GFLOP/s'
                         for dtype, flops in throughputs.items())
    return (f' % matmul: the fast path\'s FLOP/s (2 per multiply-add, 3x '
            'the forward for a training step) over torch.mm on large '
            f'square matrices, measured in this run ({measured}).')


def markdown_table(results: dict) -> str:
    """One row per (model, setting, mode, dtype), the variants side by
    side; below it, what was left unmeasured and why."""
    records = results['records']
    columns = _Columns.of(records)
    header = columns.header()
    about = (f"Device: {results['device']}, torch {results['torch']}, "
             f"median of {results['repeats']} after {results['warmup']} "
             'warm-up calls.')
    if columns.rss:
        about += (' Peak RSS: resident high-water mark of a fresh process '
                  'per record while it builds the model and runs the calls, '
                  'interpreter and imports included.')
    about += _matmul_note(results.get('matmul_flops_per_s'))
    lines = [
        about, '', '| ' + ' | '.join(header) + ' |',
        '|' + ' --- |' * len(header)
    ]
    ratios = {(s['model'], s['setting'], s['mode'], s['dtype']): s
              for s in speedups(results)}
    for key, by_variant in _group(records).items():
        cells = _row(key, by_variant, columns, ratios[key])
        lines.append('| ' + ' | '.join(cells) + ' |')
    notes = _failure_notes(records)
    if notes:
        lines += ['', 'Not measured:', ''] + notes
    return '\n'.join(lines) + '\n'


def plot_speedups(results: dict, path: str) -> None:
    """A bar chart of fast (and compiled) over reference throughput."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    rows = [r for r in speedups(results) if r['fast_speedup'] is not None]
    labels = [
        f"{r['model']}\n{r['setting']} {r['mode'][:5]} {r['dtype']}"
        for r in rows
    ]
    fig, ax = plt.subplots(figsize=(max(6, 0.5 * len(rows) + 2), 4.5))
    width = 0.4
    xs = range(len(rows))
    ax.bar([x - width / 2 for x in xs], [r['fast_speedup'] for r in rows],
           width, label='fast')
    compiled = [r['compile_speedup'] or 0 for r in rows]
    if any(compiled):
        ax.bar([x + width / 2 for x in xs], compiled, width,
               label='fast + torch.compile')
    ax.axhline(1, color='black', linewidth=0.8)
    ax.set_xticks(list(xs))
    ax.set_xticklabels(labels, rotation=90, fontsize=7)
    ax.set_ylabel('throughput / reference')
    ax.set_title(f"mmscalable fast paths vs reference ({results['device']})")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _replace_file(path: str, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file beside it, so
    that a process killed while writing leaves the previous version rather
    than a truncated one."""
    partial = f'{path}.{os.getpid()}.tmp'
    with open(partial, 'w') as f:
        f.write(text)
    os.replace(partial, path)


def write_outputs(results: dict,
                  out_prefix: str,
                  with_json: bool = True,
                  with_plot: bool = True) -> List[str]:
    """``<prefix>.json`` (unless ``with_json`` is False), ``<prefix>.md``
    and ``<prefix>.png`` (unless ``with_plot`` is False); returns the paths
    written. The JSON and Markdown files are replaced whole, never left
    half-written.

    Args:
        results (dict): What :func:`run_benchmark` returns.
        out_prefix (str): The paths without their extension.
        with_json (bool): Write the JSON. Defaults to True.
        with_plot (bool): Draw the chart. Defaults to True.
    """
    paths = []
    if with_json:
        paths.append(f'{out_prefix}.json')
        _replace_file(paths[-1], json.dumps(results, indent=1))
    paths.append(f'{out_prefix}.md')
    _replace_file(paths[-1], markdown_table(results))
    if with_plot:
        paths.append(f'{out_prefix}.png')
        plot_speedups(results, paths[-1])
    return paths
