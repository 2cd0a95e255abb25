# Copyright (c) mmscalable contributors. All rights reserved.
"""The records of a run: one per (model, setting, mode, dtype,
implementation, compile mode), measured or with the status and reason of
what left it unmeasured.

A record's variant is the name of its column in the report: its ``impl``
(``'reference'``, ``'fast'``), or, for the fast path under
``torch.compile``, ``'compile'`` (``compile='default'``) and ``'graphs'``
(``compile='reduce-overhead'``, which replays CUDA graphs on GPUs).
"""
import traceback
from typing import Callable, Dict, List, Optional, Tuple

import torch
import torch.nn as nn

from .agreement import ImplementationMismatch
from .backends import (dispatched_backends, refined_attention_backends,
                       reset_dispatched_backends)
from .models import Setting
from .timing import DTYPES, time_model

# The report's name of the fast path under each ``torch.compile`` mode.
COMPILE_VARIANTS = {'default': 'compile', 'reduce-overhead': 'graphs'}
# Statuses of records that were not measured because something is wrong (a
# command-line run then exits non-zero); 'out of memory' is a measurement.
FAILED_STATUSES = ('mismatch', 'error')


def variant(record: dict) -> str:
    """The report's name of what ``record`` timed: its ``impl``, or
    :data:`COMPILE_VARIANTS` of its ``compile`` mode (records written
    before ``compile`` was a field name the compiled variant as their
    ``impl``)."""
    compile_mode = record.get('compile')
    if compile_mode is None:
        return record['impl']
    return COMPILE_VARIANTS[compile_mode]


def new_record(name: str, setting: Setting, mode: str, dtype: str,
               impl: str, compile_mode: Optional[str],
               params: Optional[int], macs: Optional[float],
               rel_error: Optional[float]) -> dict:
    """A record with what is known before it is measured.

    Args:
        name (str): The model's name.
        setting (Setting): Input size and batch.
        mode (str): ``'inference'`` or ``'train'``.
        dtype (str): A key of :data:`DTYPES`.
        impl (str): ``'reference'`` or ``'fast'``.
        compile_mode (str, optional): The ``torch.compile`` mode, or None.
        params (int, optional): Parameters of the model.
        macs (float, optional): Multiply-adds of one image.
        rel_error (float, optional): The agreement check's relative error.
    """
    return dict(
        model=name,
        setting=str(setting),
        height=setting.height,
        width=setting.width,
        batch=setting.batch,
        mode=mode,
        dtype=dtype,
        impl=impl,
        compile=compile_mode,
        params=params,
        gflops_per_image=macs / 1e9 if macs else None,
        agreement_rel_error=rel_error,
        backends={})


def _is_oom(error: BaseException) -> bool:
    return isinstance(error, torch.cuda.OutOfMemoryError) or (
        isinstance(error, RuntimeError) and 'out of memory' in str(error))


def failure(error: BaseException, stage: str) -> Tuple[str, str]:
    """The status and reason of what ``error`` left unmeasured: 'mismatch',
    'out of memory' or 'error'.

    Args:
        error (BaseException): What was raised.
        stage (str): What raised it, first in the reason.
    """
    if isinstance(error, ImplementationMismatch):
        return 'mismatch', str(error)
    # The first line is enough for the table (CUDA's out-of-memory message
    # goes on about the allocator).
    lines = str(error).strip().splitlines() or ['']
    reason = f'{stage}: {type(error).__name__}: {lines[0][:300]}'
    return ('out of memory' if _is_oom(error) else 'error'), reason


def recorded_failure(error: BaseException,
                     stage: str,
                     device: torch.device,
                     log: Callable[[str], None],
                     context: Optional[str] = None) -> Tuple[str, str]:
    """:func:`failure`'s status and reason, logged (with ``context`` first
    if given, and the traceback of an unexpected error), after freeing the
    cached GPU memory the failed call left.

    Args:
        error (BaseException): What was raised.
        stage (str): What raised it, first in the reason.
        device (torch.device): Where it ran.
        log (Callable): Progress printer.
        context (str, optional): What failed, for the log.
    """
    status, reason = failure(error, stage)
    if context is not None:
        log(f'{context}: {status}: {reason}')
    if status == 'error':
        log(traceback.format_exc())
    if device.type == 'cuda':
        torch.cuda.empty_cache()
    return status, reason


def measure(model: nn.Module,
            setting: Setting,
            mode: str,
            dtype: str,
            device: torch.device,
            warmup: int,
            repeats: int,
            log: Callable[[str], None],
            count_sdpa: bool = True) -> dict:
    """:func:`time_model` with ``status`` 'ok' and the backends the model
    ran in these calls, or the status ('out of memory', 'error') and
    ``error``, the reason, of its failure.

    Args:
        model (nn.Module): The model to time.
        setting (Setting): Input size and batch.
        mode (str): ``'inference'`` or ``'train'``.
        dtype (str): A key of :data:`DTYPES`.
        device (torch.device): Where the model is.
        warmup (int): Untimed calls first.
        repeats (int): Timed calls.
        log (Callable): Progress printer.
        count_sdpa (bool): See :func:`time_model`. Defaults to True.
    """
    reset_dispatched_backends(model)
    try:
        timing = time_model(model, setting, mode, DTYPES[dtype], device,
                            warmup, repeats, count_sdpa)
    except Exception as error:  # noqa: B902  (recorded; the run goes on)
        status, reason = recorded_failure(error, f'{mode} {dtype}', device,
                                          log)
        return dict(status=status, error=reason)
    return dict(
        timing,
        status='ok',
        refined_attention_backends=refined_attention_backends(model),
        backends=dispatched_backends(model))


def failed_records(results: dict) -> List[dict]:
    """The records left unmeasured because something is wrong (status in
    :data:`FAILED_STATUSES`: a mismatch, an error)."""
    return [
        r for r in results['records'] if r.get('status') in FAILED_STATUSES
    ]


def backends_text(backends: Optional[Dict[str, int]]) -> str:
    """Calls per backend as text: ``'flash 12, math 4'``."""
    return ', '.join(f'{name} {count}'
                     for name, count in (backends or {}).items())


def format_record(record: dict) -> str:
    """One line of the progress log for ``record``."""
    head = (f"{record['model']} {record['setting']} {record['mode']} "
            f"{record['dtype']} {variant(record)}: ")
    if record.get('status') != 'ok':
        reason = record.get('error')
        return head + record.get('status',
                                 '?') + (f' ({reason})' if reason else '')
    text = (f"{record['images_per_s']:.1f} img/s, "
            f"{record['latency_ms']:.2f} ms")
    if record.get('peak_memory_mib') is not None:
        text += f", peak {record['peak_memory_mib']:.0f} MiB"
    if record.get('peak_rss_mib') is not None:
        text += (f", peak RSS {record['peak_rss_mib']:.0f} MiB "
                 f"(weights {record['weights_mib']:.1f} MiB)")
    if record.get('peak_fraction') is not None:
        text += f", {100 * record['peak_fraction']:.1f}% of bf16 peak"
    if record.get('matmul_fraction') is not None:
        text += f", {100 * record['matmul_fraction']:.1f}% of matmul"
    if record.get('sdpa_backends'):
        text += f", SDPA {backends_text(record['sdpa_backends'])}"
    if record.get('refined_attention_backends'):
        text += (', refined attention '
                 f"{backends_text(record['refined_attention_backends'])}")
    return head + text
