# Copyright (c) mmscalable contributors. All rights reserved.
"""The loop of a run: every model, setting, mode, dtype and variant.

For every (model, input size and batch, mode, dtype) the benchmark builds
the model once per implementation with the same weights, checks that fast
and reference agree on one image in fp32 (TF32 off), counts the FLOPs of
one image on the reference, then times each implementation, and the fast
path under ``torch.compile`` in each mode asked for.
"""
import dataclasses
import itertools
import os
import os.path as osp
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import torch

from .agreement import check_setting
from .flop_count import (MATMUL_SIZE, bf16_peak, matmul_throughputs,
                         peak_fraction)
from .memory import weights_mib
from .models import (COMPILE_MODES, IMPLS, Builder, ModelPair, Setting,
                     named_models, resolve_builder)
from .records import (COMPILE_VARIANTS, format_record, measure, new_record,
                      recorded_failure)
from .report import write_outputs
from .timing import DTYPES, MODES

# What is timed of a model: an implementation and a ``torch.compile`` mode
# (None: as it is).
Variant = Tuple[str, Optional[str]]
# The names that the fast path under torch.compile has in the report, which
# are not implementations: the compile mode of each.
_COMPILED_NAMES = {name: mode for mode, name in COMPILE_VARIANTS.items()}


def timed_variants(impls: Sequence[str],
                   compile_modes: Sequence[str]) -> List[Variant]:
    """Each implementation as it is, then the fast path under
    ``torch.compile`` in each mode."""
    return ([(impl, None) for impl in impls] +
            [('fast', mode) for mode in compile_modes])


def _check_choices(modes: Sequence[str], dtypes: Sequence[str],
                   impls: Sequence[str],
                   compile_modes: Sequence[str]) -> None:
    for impl in impls:
        if impl in _COMPILED_NAMES:
            mode = _COMPILED_NAMES[impl]
            raise ValueError(
                f'impl {impl!r} is the fast path under torch.compile: '
                f'compile_modes=({mode!r}, ) (the command line\'s '
                f'--compile {mode}) times it')
    for values, allowed, what in ((modes, MODES, 'mode'),
                                  (dtypes, DTYPES, 'dtype'),
                                  (impls, IMPLS, 'impl'),
                                  (compile_modes, COMPILE_MODES,
                                   'compile mode')):
        bad = [v for v in values if v not in allowed]
        if bad:
            raise ValueError(f'unknown {what} {bad}; one of {list(allowed)}')


def _resolve_builders(models: Sequence[str],
                      builders: Optional[Dict[str, Builder]]
                      ) -> Dict[str, Builder]:
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
    variants: Sequence[Variant]
    warmup: int
    repeats: int
    peak: Optional[float]
    matmul: Dict[str, float]
    count_model_flops: bool
    isolate: bool
    log: Callable[[str], None]

    def combinations(self) -> Iterator[Tuple[str, str, str, Optional[str]]]:
        """Every (mode, dtype, impl, compile mode) of a setting."""
        for mode, dtype, (impl, compile_mode) in itertools.product(
                self.modes, self.dtypes, self.variants):
            yield mode, dtype, impl, compile_mode


def _unmeasured_records(name: str, setting: Setting, params: Optional[int],
                        status: str, reason: str, rel_error: Optional[float],
                        run: _Run) -> Iterator[dict]:
    """A record per (mode, dtype, variant) of a setting that could not be
    measured, with its status and reason."""
    for mode, dtype, impl, compile_mode in run.combinations():
        record = new_record(name, setting, mode, dtype, impl, compile_mode,
                            params, None, rel_error)
        record.update(status=status, error=reason)
        yield record


def _measure_in_process(pair: ModelPair, setting: Setting, mode: str,
                        dtype: str, impl: str, compile_mode: Optional[str],
                        run: _Run) -> dict:
    """The measurement of one record on ``pair``, in this process."""
    model = pair.reference if impl == 'reference' else pair.fast
    measurement = dict(weights_mib=weights_mib(model))
    try:
        measurement.update(
            measure(
                pair.model(impl, compile_mode), setting, mode, dtype,
                run.device, run.warmup, run.repeats, run.log),
            peak_rss_mib=None)
    finally:
        if compile_mode is not None:
            torch._dynamo.reset()
    return measurement


def _time_record(name: str, setting: Setting, mode: str, dtype: str,
                 impl: str, compile_mode: Optional[str],
                 pair: Optional[ModelPair], params: int, rel_error: float,
                 macs: Optional[float], run: _Run) -> dict:
    """The record of one (mode, dtype, variant) at ``setting``: its timing,
    or the status and reason of its failure. ``pair`` is None when
    ``run.isolate`` (the model is built in the measuring process)."""
    record = new_record(name, setting, mode, dtype, impl, compile_mode,
                        params, macs, rel_error)
    if run.isolate:
        from .isolation import measure_in_child
        record.update(
            measure_in_child(name, setting, mode, dtype, impl, compile_mode,
                             run.device, run.warmup, run.repeats, run.log))
    else:
        record.update(
            _measure_in_process(pair, setting, mode, dtype, impl,
                                compile_mode, run))
    if record['status'] == 'ok' and macs:
        if run.peak and dtype == 'bf16':
            record['peak_fraction'] = peak_fraction(
                macs, mode, record['images_per_s'], run.peak)
        if dtype in run.matmul:
            record['matmul_fraction'] = peak_fraction(
                macs, mode, record['images_per_s'], run.matmul[dtype])
    return record


def _isolated_model_records(name: str, settings: Sequence[Setting],
                            run: _Run) -> Iterator[dict]:
    """:func:`_model_records` with ``run.isolate``: the check of each size
    and each record run in fresh processes; this one builds no model."""
    # Imported here: the package does not import the module that fresh
    # processes run as a program.
    from .isolation import check_in_child
    for setting in settings:
        outcome = check_in_child(name, setting, run.device,
                                 run.count_model_flops, run.log)
        if 'status' in outcome:
            yield from _unmeasured_records(name, setting,
                                           outcome.get('params'),
                                           outcome['status'],
                                           outcome['error'],
                                           outcome.get('rel_error'), run)
            continue
        for mode, dtype, impl, compile_mode in run.combinations():
            yield _time_record(name, setting, mode, dtype, impl,
                               compile_mode, None, outcome['params'],
                               outcome['rel_error'], outcome['macs'], run)


def _pair_records(name: str, pair: ModelPair, settings: Sequence[Setting],
                  run: _Run) -> Iterator[dict]:
    """Every record of one model built in this process: per setting, the
    agreement check, then each (mode, dtype, variant)."""
    for setting in settings:
        try:
            rel_error, macs = check_setting(name, setting, pair, run.device,
                                            run.count_model_flops, run.log)
        except Exception as error:  # noqa: B902  (recorded)
            status, reason = recorded_failure(error, 'agreement check',
                                              run.device, run.log,
                                              f'{name} {setting}')
            yield from _unmeasured_records(name, setting, pair.params,
                                           status, reason,
                                           getattr(error, 'rel_error',
                                                   None), run)
            continue
        for mode, dtype, impl, compile_mode in run.combinations():
            yield _time_record(name, setting, mode, dtype, impl,
                               compile_mode, pair, pair.params, rel_error,
                               macs, run)


def _model_records(name: str, builder: Builder, settings: Sequence[Setting],
                   run: _Run) -> Iterator[dict]:
    """Every record of one model, as measured. A failure to build or check
    gives records with its status and reason for what it leaves
    unmeasured."""
    if run.isolate:
        yield from _isolated_model_records(name, settings, run)
        return
    try:
        pair = ModelPair.build(builder, run.device)
    except Exception as error:  # noqa: B902  (recorded; the run goes on)
        status, reason = recorded_failure(error, 'build', run.device,
                                          run.log, name)
        for setting in settings:
            yield from _unmeasured_records(name, setting, None, status,
                                           reason, None, run)
        return
    try:
        yield from _pair_records(name, pair, settings, run)
    finally:
        del pair
        if run.device.type == 'cuda':
            torch.cuda.empty_cache()


def run_benchmark(models: Sequence[str],
                  settings: Sequence[Setting],
                  modes: Sequence[str] = MODES,
                  dtypes: Sequence[str] = tuple(DTYPES),
                  impls: Sequence[str] = IMPLS,
                  compile_modes: Sequence[str] = (),
                  device: str = 'cuda',
                  warmup: int = 5,
                  repeats: int = 20,
                  peak_flops: Optional[float] = None,
                  count_model_flops: bool = True,
                  builders: Optional[Dict[str, Builder]] = None,
                  log: Callable[[str], None] = print,
                  isolate: bool = False,
                  out_prefix: Optional[str] = None,
                  matmul_size: int = MATMUL_SIZE) -> dict:
    """Benchmark every combination; returns the JSON-ready results.

    A model that cannot be built, fails its agreement check or fails while
    timed gets records with ``status`` 'mismatch', 'error' or 'out of
    memory' and the reason (``error``), and the run goes on
    (:func:`failed_records` lists those that are not measurements).

    Args:
        models (Sequence[str]): Keys of :func:`named_models` (or of
            ``builders``), or mmdet / mmseg config paths.
        settings (Sequence[Setting]): Input sizes and batches.
        modes (Sequence[str]): ``'inference'`` and/or ``'train'``.
        dtypes (Sequence[str]): ``'fp32'`` and/or ``'bf16'`` (autocast).
        impls (Sequence[str]): Of :data:`IMPLS`; ``'reference'`` and
            ``'fast'`` are always checked for agreement first.
        compile_modes (Sequence[str]): Of :data:`COMPILE_MODES`: also time
            the fast path under ``torch.compile`` in each (records with
            ``impl='fast'`` and that ``compile`` mode). Defaults to none.
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
        isolate (bool): Measure each record in a fresh process, which
            records its peak resident memory (``peak_rss_mib``); needs
            named models or config paths, not ``builders``.
            Defaults to False.
        out_prefix (str, optional): Rewrite ``<out_prefix>.json`` and
            ``<out_prefix>.md`` after every record (see
            :func:`write_outputs`).
        matmul_size (int): The side of the square matrices whose product
            measures the matmul throughput of each dtype, at the start of
            the run (with ``count_model_flops``); each record's achieved
            FLOP/s is given as a fraction of it (``matmul_fraction``).
            Defaults to :data:`MATMUL_SIZE`.
    """
    if isolate and builders is not None:
        raise ValueError('isolate=True builds each model by its name in a '
                         'fresh process: it takes named models and config '
                         'paths, not builders')
    builders = _resolve_builders(models, builders)
    _check_choices(modes, dtypes, impls, compile_modes)
    device = torch.device(device)
    run = _Run(
        device=device,
        modes=modes,
        dtypes=dtypes,
        variants=timed_variants(impls, compile_modes),
        warmup=warmup,
        repeats=repeats,
        peak=peak_flops if peak_flops is not None else bf16_peak(device),
        matmul=(matmul_throughputs(device, dtypes, matmul_size)
                if count_model_flops else {}),
        count_model_flops=count_model_flops,
        isolate=isolate,
        log=log)
    results = dict(
        device=(torch.cuda.get_device_name(device)
                if device.type == 'cuda' else 'cpu'),
        torch=torch.__version__,
        bf16_peak_flops=run.peak,
        matmul_flops_per_s=run.matmul,
        warmup=warmup,
        repeats=repeats,
        isolate=isolate,
        records=[])
    if out_prefix is not None:
        os.makedirs(osp.dirname(osp.abspath(out_prefix)), exist_ok=True)
    for name in models:
        for record in _model_records(name, builders[name], settings, run):
            results['records'].append(record)
            if out_prefix is not None:
                write_outputs(results, out_prefix, with_plot=False)
            log(format_record(record))
    return results
