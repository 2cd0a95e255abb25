# Copyright (c) mmscalable contributors. All rights reserved.
"""Throughput, latency and peak memory of the backbones, reference against
fast, in one run.

Needs only torch, mmengine and the pure-Python parts of mmcv (mmcv-lite), so
it runs on a machine without mmcv's ops, mmdet or mmseg.

For every (model, input size and batch, mode, dtype) the benchmark builds
the backbone once per implementation with the same weights:

* ``reference``: the computation of the official code
  (``attn_impl='reference'``);
* ``fast``: the default (``attn_impl='fast'``);
* ``compile``: the fast model under ``torch.compile``.

The named models (:func:`named_models`, ``scalablevit-s`` ...) are every variant
of every family in :data:`mmscalable.models.checkpoint.FAMILIES`, one per
distinct entry of the backbone class's ``arch_zoo``.

Before it times anything it checks that fast and reference agree on one
image in fp32 (TF32 off). Timing uses CUDA events on a GPU and
``time.perf_counter`` on the CPU: ``warmup`` untimed calls, then the median
of ``repeats`` timed ones (``torch.compile`` compiles in the untimed calls).
An inference call is a forward under ``torch.inference_mode``; a training
step is forward, a loss over every output, backward and an AdamW step.
``dtype='bf16'`` runs under ``torch.autocast``. Peak memory is what one
model's calls need on the GPU (its weights, plus the peak of
``torch.cuda.max_memory_allocated`` above the memory held before them); it is
not measured on the CPU. FLOPs are counted once per model and size on the
reference with mmengine's ``FlopAnalyzer`` (fvcore's
convention: one multiply-add is one FLOP, as the papers report them); the
achieved fraction of peak counts 2 FLOPs per multiply-add, and 3x the forward
for a training step.
"""
import dataclasses
import functools
import itertools
import json
import math
import statistics
import time
from typing import (Callable, Dict, Iterable, List, Optional, Sequence, Tuple,
                    Union)

import torch
import torch.nn as nn

IMPLS = ('reference', 'fast', 'compile')
MODES = ('inference', 'train')
DTYPES = {'fp32': torch.float32, 'bf16': torch.bfloat16}

# Dense bf16 tensor-core peaks (no sparsity), in FLOP/s, by a substring of
# ``torch.cuda.get_device_name``; the first match wins.
BF16_PEAKS = (
    ('H200', 989.4e12),
    ('H100 PCIe', 756.5e12),
    ('H100', 989.4e12),
    ('A100', 312e12),
    ('L40S', 362.05e12),
    ('A10G', 70e12),
    ('RTX 4090', 165.2e12),
)


def backbone_builder(backbone: str, arch: Union[str, dict],
                     **kwargs) -> Callable[[str], nn.Module]:
    """A builder ``fn(impl)`` of a backbone registered in the ``mmscalable``
    MODELS registry, built with ``attn_impl=impl`` and no drop path.

    Args:
        backbone (str): The registered name (``'ScalableViT'``).
        arch (str | dict): Its ``arch``.
        **kwargs: Further arguments of the backbone.
    """

    def build(impl: str) -> nn.Module:
        # The class itself, not ``REGISTRY.build``: a default scope left by
        # a whole-model builder (mmdet, mmseg) would redirect the lookup.
        return _registered(backbone)(
            arch=arch, attn_impl=impl, drop_path_rate=0., **kwargs)

    return build


def _registered(backbone: str) -> type:
    import mmscalable.models  # noqa: F401  (registers the backbones)
    from mmscalable.registry import MODELS as REGISTRY
    cls = REGISTRY.get(backbone)
    if cls is None:
        raise KeyError(f'{backbone} is not registered in the mmscalable '
                       'MODELS registry')
    return cls


def arch_builders(backbone: str,
                  model_prefix: str) -> Dict[str, Callable[[str], nn.Module]]:
    """Builders of every variant of a registered backbone's ``arch_zoo``
    (one per distinct variant), named ``<model_prefix>-<arch>``."""
    from mmscalable.models.checkpoint import canonical_archs
    archs = canonical_archs(_registered(backbone).arch_zoo)
    return {
        f'{model_prefix}-{arch}': backbone_builder(backbone, arch)
        for arch in archs
    }


def family_builders() -> Dict[str, Callable[[str], nn.Module]]:
    """Builders of every variant of every family in
    :data:`mmscalable.models.checkpoint.FAMILIES`."""
    from mmscalable.models.checkpoint import FAMILIES
    builders = {}
    for family in FAMILIES.values():
        builders.update(arch_builders(family.backbone, family.model_prefix))
    return builders


@functools.lru_cache(maxsize=None)
def named_models() -> Dict[str, Callable[[str], nn.Module]]:
    """The named models (``scalablevit-s`` ...): :func:`family_builders`,
    made on first use, as it imports every backbone (importing this module
    stays cheap for the timing helpers)."""
    return family_builders()


def resolve_builder(name: str,
                    builders: Optional[Dict[str, Callable]] = None
                    ) -> Callable[[str], nn.Module]:
    """The builder of a model name, or of a detector / segmentor config
    (a path ending in ``.py``, see ``task_models.py``)."""
    builders = named_models() if builders is None else builders
    if name in builders:
        return builders[name]
    if name.endswith('.py'):
        from .task_models import config_builder
        return config_builder(name)
    raise KeyError(f'unknown models [{name!r}]; known: {list(builders)} '
                   'or an mmdet / mmseg config path')


@dataclasses.dataclass
class Setting:
    """An input size and batch, parsed from ``'HxW:B'`` (e.g. ``224x224:64``).
    """
    height: int
    width: int
    batch: int

    @classmethod
    def parse(cls, text: str) -> 'Setting':
        try:
            size, batch = text.split(':')
            height, width = size.lower().split('x')
            setting = cls(int(height), int(width), int(batch))
        except ValueError:
            raise ValueError(f'a setting is HxW:BATCH (e.g. 224x224:64), '
                             f'got {text!r}') from None
        if min(setting.height, setting.width, setting.batch) < 1:
            raise ValueError(f'sizes and batch must be positive: {text!r}')
        return setting

    def __str__(self) -> str:
        return f'{self.height}x{self.width}:{self.batch}'


class ImplementationMismatch(AssertionError):
    """Fast and reference outputs differ beyond the tolerance."""


def _loss(outputs) -> torch.Tensor:
    outputs = outputs if isinstance(outputs, (tuple, list)) else [outputs]
    return sum(o.float().mean() for o in outputs)


def check_agreement(reference: nn.Module,
                    fast: nn.Module,
                    setting: Setting,
                    device: torch.device,
                    rtol: float = 1e-4) -> float:
    """Largest relative difference of fast and reference outputs on one
    image in fp32 (eval mode, TF32 off); raises if above ``rtol``.

    Models with an ``agreement_forward`` (whole detectors) are compared on
    what it returns.
    """
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(
        1, 3, setting.height, setting.width, generator=gen).to(device)
    tf32 = (torch.backends.cuda.matmul.allow_tf32,
            torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    try:
        with torch.no_grad():
            ref_out = getattr(reference.eval(), 'agreement_forward',
                              reference)(x)
            fast_out = getattr(fast.eval(), 'agreement_forward', fast)(x)
    finally:
        (torch.backends.cuda.matmul.allow_tf32,
         torch.backends.cudnn.allow_tf32) = tf32
    worst = 0.
    for i, (a, b) in enumerate(zip(ref_out, fast_out)):
        error = ((a - b).abs().max() / a.abs().max().clamp_min(1e-12)).item()
        if not math.isfinite(error) or error > rtol:
            raise ImplementationMismatch(
                f'output {i} of fast and reference differ: relative error '
                f'{error:.3g} > {rtol:g} at {setting.height}x{setting.width}')
        worst = max(worst, error)
    return worst


class _Timer:
    """CUDA events on a GPU, ``perf_counter`` on the CPU."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == 'cuda'

    def __call__(self, fn: Callable[[], None]) -> float:
        if self.cuda:
            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            return start.elapsed_time(end) / 1e3
        begin = time.perf_counter()
        fn()
        return time.perf_counter() - begin


def median_seconds(fn: Callable[[], None], device: torch.device,
                   warmup: int, repeats: int) -> float:
    """Median time of ``fn()`` after ``warmup`` untimed calls: CUDA events
    on a GPU, ``perf_counter`` on the CPU."""
    timer = _Timer(torch.device(device))
    for _ in range(warmup):
        fn()
    return statistics.median([timer(fn) for _ in range(repeats)])


def _step_fn(model: nn.Module, x: torch.Tensor, mode: str,
             dtype: torch.dtype) -> Callable[[], None]:
    autocast = torch.autocast(
        x.device.type, dtype=dtype, enabled=dtype != torch.float32)
    if mode == 'inference':
        model.eval()

        def infer():
            with torch.inference_mode(), autocast:
                model(x)

        return infer
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-6)

    def train_step():
        with autocast:
            loss = _loss(model(x))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return train_step


def time_model(model: nn.Module,
               setting: Setting,
               mode: str,
               dtype: torch.dtype,
               device: torch.device,
               warmup: int = 5,
               repeats: int = 20) -> dict:
    """Median latency, throughput and peak memory of one model.

    The peak memory is what this model's calls need: its parameters and
    buffers plus the peak allocated above what was allocated before them
    (inputs, activations, gradients, optimiser state), so that other models
    held on the device do not count.
    """
    cuda = device.type == 'cuda'
    x = torch.randn(setting.batch, 3, setting.height, setting.width,
                    device=device)
    if cuda:
        torch.cuda.synchronize(device)
        baseline = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
    latency = median_seconds(
        _step_fn(model, x, mode, dtype), device, warmup, repeats)
    peak = None
    if cuda:
        own = sum(t.numel() * t.element_size()
                  for t in itertools.chain(model.parameters(),
                                           model.buffers()))
        peak = (torch.cuda.max_memory_allocated(device) - baseline + own +
                x.numel() * x.element_size()) / 2**20
    return dict(
        latency_ms=latency * 1e3,
        images_per_s=setting.batch / latency,
        peak_memory_mib=peak)


def count_flops(model: nn.Module, setting: Setting,
                device: torch.device) -> Optional[float]:
    """Multiply-adds of one image's forward (fvcore convention), or None
    when mmengine's analysis is not available."""
    try:
        from mmengine.analysis import FlopAnalyzer
    except ImportError:
        return None
    x = torch.randn(1, 3, setting.height, setting.width, device=device)
    analyzer = FlopAnalyzer(model.eval(), (x, ))
    analyzer.unsupported_ops_warnings(False)
    analyzer.uncalled_modules_warnings(False)
    try:
        return float(analyzer.total())
    except Exception as error:  # noqa: B902  (tracing whole detectors)
        print(f'FLOPs of {type(model).__name__} not counted: {error}')
        return None


def bf16_peak(device: torch.device) -> Optional[float]:
    """Dense bf16 peak of the GPU in FLOP/s, None if unknown or a CPU."""
    if device.type != 'cuda':
        return None
    name = torch.cuda.get_device_name(device)
    for key, peak in BF16_PEAKS:
        if key in name:
            return peak
    return None


def _is_oom(error: BaseException) -> bool:
    return isinstance(error, torch.cuda.OutOfMemoryError) or (
        isinstance(error, RuntimeError) and 'out of memory' in str(error))


def _time_or_oom(model: nn.Module, setting: Setting, mode: str, dtype: str,
                 device: torch.device, warmup: int, repeats: int) -> dict:
    """:func:`time_model` with ``status`` 'ok', or 'out of memory'."""
    try:
        timing = time_model(model, setting, mode, DTYPES[dtype], device,
                            warmup, repeats)
    except Exception as error:  # noqa: B902
        if not _is_oom(error):
            raise
        if device.type == 'cuda':
            torch.cuda.empty_cache()
        return dict(status='out of memory')
    return dict(timing, status='ok')


def _check_choices(modes: Sequence[str], dtypes: Sequence[str],
                   impls: Sequence[str]) -> None:
    for values, allowed, what in ((modes, MODES, 'mode'),
                                  (dtypes, DTYPES, 'dtype'),
                                  (impls, IMPLS, 'impl')):
        bad = [v for v in values if v not in allowed]
        if bad:
            raise ValueError(f'unknown {what} {bad}; one of {list(allowed)}')


def _resolve_builders(models: Sequence[str],
                      builders: Optional[Dict[str, Callable]]
                      ) -> Dict[str, Callable[[str], nn.Module]]:
    """``builders`` (or :func:`named_models`) with a builder for every config
    path in ``models``; raises for an unknown name."""
    builders = dict(builders or named_models())
    for name in models:
        if name not in builders:
            builders[name] = resolve_builder(name, builders)
    return builders


@dataclasses.dataclass
class _Run:
    """What the records of one benchmark run share."""
    device: torch.device
    modes: Sequence[str]
    dtypes: Sequence[str]
    impls: Sequence[str]
    warmup: int
    repeats: int
    peak: Optional[float]
    count_model_flops: bool
    log: Callable[[str], None]


@dataclasses.dataclass
class _ModelPair:
    """One model built per implementation, with the same weights."""
    fast: nn.Module
    reference: nn.Module
    initial_state: Dict[str, torch.Tensor]
    params: int

    @classmethod
    def build(cls, builder: Callable[[str], nn.Module],
              device: torch.device) -> '_ModelPair':
        torch.manual_seed(0)
        fast = builder('fast').to(device)
        reference = builder('reference').to(device)
        reference.load_state_dict(fast.state_dict(), strict=True)
        initial_state = {k: v.clone() for k, v in fast.state_dict().items()}
        params = sum(p.numel() for p in fast.parameters())
        return cls(fast, reference, initial_state, params)

    def model(self, impl: str) -> nn.Module:
        """The model that ``impl`` times, at the initial weights (a training
        step changes them, and every timed run starts from the same)."""
        model = self.fast if impl != 'reference' else self.reference
        model.load_state_dict(self.initial_state)
        return torch.compile(model) if impl == 'compile' else model


def _check_setting(name: str, setting: Setting, pair: _ModelPair,
                   run: _Run) -> Tuple[float, Optional[float]]:
    """Agreement of fast and reference at ``setting`` (raises when they
    differ) and the multiply-adds of one image, or None."""
    error = check_agreement(pair.reference, pair.fast, setting, run.device)
    macs = (
        count_flops(pair.reference, setting, run.device)
        if run.count_model_flops else None)
    run.log(f'{name} {setting}: fast and reference agree '
            f'(relative error {error:.2g}); ' +
            (f'{macs / 1e9:.2f} GFLOPs' if macs else 'FLOPs not counted'))
    return error, macs


def _time_record(name: str, setting: Setting, mode: str, dtype: str,
                 impl: str, pair: _ModelPair, error: float,
                 macs: Optional[float], run: _Run) -> dict:
    """The record of one (mode, dtype, impl) at ``setting``: its timing, or
    ``status='out of memory'``."""
    record = dict(
        model=name,
        setting=str(setting),
        height=setting.height,
        width=setting.width,
        batch=setting.batch,
        mode=mode,
        dtype=dtype,
        impl=impl,
        params=pair.params,
        gflops_per_image=macs / 1e9 if macs else None,
        agreement_rel_error=error)
    record.update(
        _time_or_oom(
            pair.model(impl), setting, mode, dtype, run.device, run.warmup,
            run.repeats))
    if record['status'] == 'ok' and macs and run.peak and dtype == 'bf16':
        work = 2 * macs * (3 if mode == 'train' else 1)
        record['peak_fraction'] = work * record['images_per_s'] / run.peak
    if impl == 'compile':
        torch._dynamo.reset()
    return record


def _benchmark_model(name: str, builder: Callable[[str], nn.Module],
                     settings: Sequence[Setting], run: _Run) -> List[dict]:
    """Every record of one model: per setting, the agreement check, then
    each (mode, dtype, impl)."""
    pair = _ModelPair.build(builder, run.device)
    records = []
    for setting in settings:
        error, macs = _check_setting(name, setting, pair, run)
        for mode, dtype, impl in itertools.product(run.modes, run.dtypes,
                                                   run.impls):
            record = _time_record(name, setting, mode, dtype, impl, pair,
                                  error, macs, run)
            records.append(record)
            run.log(format_record(record))
    del pair
    if run.device.type == 'cuda':
        torch.cuda.empty_cache()
    return records


def run_benchmark(models: Sequence[str],
                  settings: Sequence[Setting],
                  modes: Sequence[str] = MODES,
                  dtypes: Sequence[str] = tuple(DTYPES),
                  impls: Sequence[str] = ('reference', 'fast'),
                  device: str = 'cuda',
                  warmup: int = 5,
                  repeats: int = 20,
                  peak_flops: Optional[float] = None,
                  count_model_flops: bool = True,
                  builders: Optional[Dict[str, Callable]] = None,
                  log: Callable[[str], None] = print) -> dict:
    """Benchmark every combination; returns the JSON-ready results.

    Args:
        models (Sequence[str]): Keys of :func:`named_models` (or of
            ``builders``),
            or mmdet / mmseg config paths.
        settings (Sequence[Setting]): Input sizes and batches.
        modes (Sequence[str]): ``'inference'`` and/or ``'train'``.
        dtypes (Sequence[str]): ``'fp32'`` and/or ``'bf16'`` (autocast).
        impls (Sequence[str]): Of :data:`IMPLS`; ``'reference'`` and
            ``'fast'`` are always checked for agreement first.
        device (str): Torch device. Defaults to ``'cuda'``.
        warmup (int): Untimed calls before timing. Defaults to 5.
        repeats (int): Timed calls (the median is reported).
            Defaults to 20.
        peak_flops (float, optional): The device's bf16 peak in FLOP/s;
            looked up by GPU name when None.
        count_model_flops (bool): Count FLOPs per model and size.
            Defaults to True.
        builders (dict, optional): Model builders ``name -> fn(impl)``
            (``impl`` is ``'fast'`` or ``'reference'``) instead of
            :func:`named_models`.
        log (Callable): Progress printer. Defaults to ``print``.
    """
    builders = _resolve_builders(models, builders)
    _check_choices(modes, dtypes, impls)
    device = torch.device(device)
    run = _Run(
        device=device,
        modes=modes,
        dtypes=dtypes,
        impls=impls,
        warmup=warmup,
        repeats=repeats,
        peak=peak_flops if peak_flops is not None else bf16_peak(device),
        count_model_flops=count_model_flops,
        log=log)
    results = dict(
        device=(torch.cuda.get_device_name(device)
                if device.type == 'cuda' else 'cpu'),
        torch=torch.__version__,
        bf16_peak_flops=run.peak,
        warmup=warmup,
        repeats=repeats,
        records=[])
    for name in models:
        results['records'] += _benchmark_model(name, builders[name],
                                               settings, run)
    return results


def format_record(record: dict) -> str:
    head = (f"{record['model']} {record['setting']} {record['mode']} "
            f"{record['dtype']} {record['impl']}: ")
    if record.get('status') != 'ok':
        return head + record.get('status', '?')
    text = (f"{record['images_per_s']:.1f} img/s, "
            f"{record['latency_ms']:.2f} ms")
    if record.get('peak_memory_mib') is not None:
        text += f", peak {record['peak_memory_mib']:.0f} MiB"
    if record.get('peak_fraction') is not None:
        text += f", {100 * record['peak_fraction']:.1f}% of bf16 peak"
    return head + text


def _group(records: Iterable[dict]) -> Dict[Tuple, Dict[str, dict]]:
    rows: Dict[Tuple, Dict[str, dict]] = {}
    for r in records:
        key = (r['model'], r['setting'], r['mode'], r['dtype'])
        rows.setdefault(key, {})[r['impl']] = r
    return rows


def speedups(results: dict) -> List[dict]:
    """Per (model, setting, mode, dtype): fast / reference throughput and
    memory ratios, and compile / reference where it ran."""
    out = []
    for (model, setting, mode, dtype), by_impl in _group(
            results['records']).items():
        ref = by_impl.get('reference')
        row = dict(model=model, setting=setting, mode=mode, dtype=dtype)
        for impl in ('fast', 'compile'):
            r = by_impl.get(impl)
            ok = (ref is not None and r is not None
                  and ref.get('status') == r.get('status') == 'ok')
            row[f'{impl}_speedup'] = (
                r['images_per_s'] / ref['images_per_s'] if ok else None)
            row[f'{impl}_memory_ratio'] = (
                r['peak_memory_mib'] / ref['peak_memory_mib']
                if ok and ref['peak_memory_mib'] else None)
        out.append(row)
    return out


def _cell(record: Optional[dict], key: str, fmt: str) -> str:
    if record is None:
        return '-'
    if record.get('status') != 'ok':
        return record.get('status', '?')
    value = record.get(key)
    return '-' if value is None else format(value, fmt)


def markdown_table(results: dict) -> str:
    """One row per (model, setting, mode, dtype), implementations side by
    side."""
    impls = [i for i in IMPLS if any(r['impl'] == i
                                     for r in results['records'])]
    records = results['records']
    # Columns a CPU run cannot fill are left out.
    with_memory = any(r.get('peak_memory_mib') is not None for r in records)
    with_fraction = any(r.get('peak_fraction') is not None for r in records)
    header = ['model', 'HxW:batch', 'mode', 'dtype', 'GFLOPs']
    header += [f'{i} img/s' for i in impls]
    header += [f'{i} ms' for i in impls]
    header += [f'{i} peak MiB' for i in impls] if with_memory else []
    header += ['fast / ref']
    header += ['compile / ref'] if 'compile' in impls else []
    header += ['fast % bf16 peak'] if with_fraction else []
    lines = [
        f"Device: {results['device']}, torch {results['torch']}, median of "
        f"{results['repeats']} after {results['warmup']} warm-up calls.", '',
        '| ' + ' | '.join(header) + ' |',
        '|' + ' --- |' * len(header)
    ]
    ratios = {(s['model'], s['setting'], s['mode'], s['dtype']): s
              for s in speedups(results)}
    for key, by_impl in _group(results['records']).items():
        any_record = next(iter(by_impl.values()))
        gflops = any_record.get('gflops_per_image')
        cells = list(key) + [f'{gflops:.2f}' if gflops else '-']
        cells += [_cell(by_impl.get(i), 'images_per_s', '.1f') for i in impls]
        cells += [_cell(by_impl.get(i), 'latency_ms', '.2f') for i in impls]
        if with_memory:
            cells += [
                _cell(by_impl.get(i), 'peak_memory_mib', '.0f')
                for i in impls
            ]
        for impl in ('fast', 'compile')[:1 + ('compile' in impls)]:
            speedup = ratios[key][f'{impl}_speedup']
            cells.append('-' if speedup is None else f'{speedup:.2f}x')
        if with_fraction:
            fraction = (by_impl.get('fast') or {}).get('peak_fraction')
            cells.append('-' if fraction is None else
                         f'{100 * fraction:.1f}%')
        lines.append('| ' + ' | '.join(cells) + ' |')
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


def write_outputs(results: dict,
                  out_prefix: str,
                  with_json: bool = True) -> List[str]:
    """``<prefix>.json`` (unless ``with_json`` is False), ``<prefix>.md``
    and ``<prefix>.png``; returns the paths written."""
    paths = []
    if with_json:
        paths.append(f'{out_prefix}.json')
        with open(paths[-1], 'w') as f:
            json.dump(results, f, indent=1)
    paths.append(f'{out_prefix}.md')
    with open(paths[-1], 'w') as f:
        f.write(markdown_table(results))
    paths.append(f'{out_prefix}.png')
    plot_speedups(results, paths[-1])
    return paths
