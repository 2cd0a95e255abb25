# Copyright (c) mmscalable contributors. All rights reserved.
"""Throughput, latency and peak memory of the backbones, reference against
fast, in one run.

Needs only torch, mmengine and the pure-Python parts of mmcv (mmcv-lite), so
it runs on a machine without mmcv's ops, mmdet or mmseg.

For every (model, input size and batch, mode, dtype) the benchmark builds
the backbone once per implementation with the same weights and times:

* ``reference``: the computation of the official code
  (``attn_impl='reference'``);
* ``fast``: the default (``attn_impl='fast'``);
* with ``compile_modes`` (the command line's ``--compile``), the fast model
  under ``torch.compile`` in each mode: ``'default'`` (the report's
  ``compile`` column) and ``'reduce-overhead'``, which replays CUDA graphs
  on GPUs (the small variants are launch-bound; the ``graphs`` column); on
  the CPU it compiles as ``'default'`` does. Their records have
  ``impl='fast'`` and the mode in ``compile`` (None for the others).

The named models (:func:`named_models`, ``scalablevit-s`` ...) are every
variant of every backbone family, one per distinct entry of the backbone
class's ``arch_zoo``; ``models.py`` reads the family table.

Before it times anything it checks that fast and reference agree on one
image in fp32 (TF32 off, ``agreement.py``). ``timing.py`` says what a call
is and how it is timed, ``memory.py`` how its memory is measured (peak GPU
memory is not measured on the CPU) and ``flop_count.py`` how the FLOPs and
the achieved fraction of the bf16 peak are counted. Every record also holds
the size of the timed model's weights (``weights_mib``) and which backends
its calls ran (``backends.py``): the ``scaled_dot_product_attention``
backends of one forward between the untimed and the timed calls
(``sdpa_backends``, e.g. ``{'flash': 12, 'math': 4}``), how Refiner-ViT's
refiner blocks computed their refined maps (``refined_attention_backends``,
e.g. ``{'ext': 12}``) and the backend each module dispatched its ops to
(``backends``, ``{module class name: [backend names]}``).

With ``isolate=True`` (the command line's ``--isolate``) each record is
measured in a fresh Python process, which also gives its peak resident CPU
memory (``peak_rss_mib``, see ``isolation.py``). The default measures every
record in one process, which is faster and leaves ``peak_rss_mib`` unset.

A model that fails its agreement check (``status='mismatch'``) or cannot be
built or checked (``'error'``, ``'out of memory'``) gets a record per
(mode, dtype, variant) with that status and the reason (``error``), and the
run goes on with the next one; a call that fails while timed is recorded the
same way (``runner.py``). With ``out_prefix``, ``<prefix>.json`` and
``<prefix>.md`` are rewritten after every record, so that a run cut short
keeps every figure measured so far (``report.py``).
"""
from .agreement import ImplementationMismatch, check_agreement
from .backends import (SDPA_BACKEND_OPS, refined_attention_backends,
                       sdpa_backends)
from .flop_count import BF16_PEAKS, bf16_peak, count_flops
from .memory import peak_rss_mib, reset_peak_rss, weights_mib
from .models import (COMPILE_MODES, IMPLS, ModelPair, Setting, arch_builders,
                     backbone_builder, compiled, family_builders, named_models,
                     resolve_builder)
from .records import (COMPILE_VARIANTS, FAILED_STATUSES, failed_records,
                      format_record)
from .report import markdown_table, plot_speedups, speedups, write_outputs
from .runner import run_benchmark
from .timing import DTYPES, MODES, median_seconds, time_model

__all__ = [
    'BF16_PEAKS', 'COMPILE_MODES', 'COMPILE_VARIANTS', 'DTYPES',
    'FAILED_STATUSES', 'IMPLS', 'ImplementationMismatch', 'MODES',
    'ModelPair', 'SDPA_BACKEND_OPS', 'Setting', 'arch_builders',
    'backbone_builder', 'bf16_peak', 'check_agreement', 'compiled',
    'count_flops', 'failed_records', 'family_builders', 'format_record',
    'markdown_table', 'median_seconds', 'named_models', 'peak_rss_mib',
    'plot_speedups', 'refined_attention_backends', 'reset_peak_rss',
    'resolve_builder', 'run_benchmark', 'sdpa_backends', 'speedups',
    'time_model', 'weights_mib', 'write_outputs'
]
