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
* ``compile``: the fast model under ``torch.compile``;
* ``graphs``: the fast model under ``torch.compile(mode='reduce-overhead')``,
  which replays CUDA graphs on GPUs (the small variants are launch-bound);
  on the CPU it compiles as ``compile`` does.

The named models (:func:`named_models`, ``scalablevit-s`` ...) are every
variant of every family in :data:`mmscalable.models.checkpoint.FAMILIES`,
one per distinct entry of the backbone class's ``arch_zoo``.

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

Every record also holds the size of the timed model's weights
(``weights_mib``) and which ``scaled_dot_product_attention`` backends its
forward ran (``sdpa_backends``, e.g. ``{'flash': 12, 'math': 4}``): one
forward between the untimed and the timed calls runs under
``torch.profiler``, whose kernel op names tell the backend (flash,
efficient, cudnn, math, or the CPU's flash kernel, ``flash_cpu``). The
reference path, and the fast path on the CPU, attend explicitly and run
none. Records of Refiner-ViT also say how its refiner blocks computed their
refined maps in the timed calls (``refined_attention_backends``, e.g.
``{'fused': 12}``, or ``'chunked'`` where the fused op's kernels do not
take the maps).

Peak CPU memory needs a process of its own: with ``isolate=True`` (the
command line's ``--isolate``) each record is measured in a fresh Python
process, which builds only the model it times (from the same seed) and
reports, beside the weights' size, its resident high-water mark while it
builds the model and runs the calls (``peak_rss_mib``; on Linux the mark is
reset after the imports, elsewhere it covers the whole process) and its
resident size before the model was built (``base_rss_mib``: interpreter and
imports, included in the peak). The agreement check and the FLOPs of each
size run in a fresh process of their own too, so that a crash there (the
reference at sizes its explicit maps cannot hold) is recorded against that
size and the run goes on. The default measures every record in one process,
which is faster and leaves ``peak_rss_mib`` unset.

A model that fails its agreement check (``status='mismatch'``) or cannot be
built or checked (``'error'``, ``'out of memory'``) gets a record per
(mode, dtype, impl) with that status and the reason (``error``), and the run
goes on with the next one; a call that fails while timed is recorded the
same way. With ``out_prefix``, ``<prefix>.json`` and ``<prefix>.md`` are
rewritten after every record, so that a run cut short keeps every figure
measured so far.
"""
import dataclasses
import functools
import itertools
import json
import math
import os
import os.path as osp
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from typing import (Callable, Dict, Iterable, Iterator, List, Optional,
                    Sequence, Tuple, Union)

import torch
import torch.nn as nn

from mmscalable.torch_compat import autocast

IMPLS = ('reference', 'fast', 'compile', 'graphs')
# The compiled implementations and their torch.compile mode.
COMPILE_MODES = {'compile': 'default', 'graphs': 'reduce-overhead'}
MODES = ('inference', 'train')
DTYPES = {'fp32': torch.float32, 'bf16': torch.bfloat16}
# Statuses of records that were not measured because something is wrong (a
# command-line run then exits non-zero); 'out of memory' is a measurement.
FAILED_STATUSES = ('mismatch', 'error')

# The backend of each ``scaled_dot_product_attention`` kernel op, by the
# start of its profiler name; the first match wins (the CPU flash kernel's
# name extends the CUDA one's).
SDPA_BACKEND_OPS = (
    ('aten::_scaled_dot_product_flash_attention_for_cpu', 'flash_cpu'),
    ('aten::_scaled_dot_product_flash_attention', 'flash'),
    ('aten::_flash_attention_forward', 'flash'),
    ('aten::_scaled_dot_product_efficient_attention', 'efficient'),
    ('aten::_efficient_attention_forward', 'efficient'),
    ('aten::_scaled_dot_product_cudnn_attention', 'cudnn'),
    ('aten::_cudnn_attention_forward', 'cudnn'),
    ('aten::_scaled_dot_product_attention_math', 'math'),
    ('aten::_scaled_dot_product_fused_attention_overrideable', 'overrideable'),
)

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
    """Fast and reference outputs differ beyond the tolerance.

    Args:
        message (str): Which output differs, and by how much.
        rel_error (float, optional): The relative difference found, None if
            it is not finite.
    """

    def __init__(self, message: str, rel_error: Optional[float] = None):
        super().__init__(message)
        self.rel_error = rel_error


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
                f'{error:.3g} > {rtol:g} at {setting.height}x{setting.width}',
                error if math.isfinite(error) else None)
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


def _autocast(x: torch.Tensor, dtype: torch.dtype):
    return autocast(
        x.device.type, dtype=dtype, enabled=dtype != torch.float32)


def _step_fn(model: nn.Module, x: torch.Tensor, mode: str,
             dtype: torch.dtype) -> Callable[[], None]:
    autocast = _autocast(x, dtype)
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


def _forward_fn(model: nn.Module, x: torch.Tensor, mode: str,
                dtype: torch.dtype) -> Callable[[], None]:
    """The forward of a :func:`_step_fn` call (recording autograd for a
    training step), without backward and optimiser step: the weights stay
    as they are."""
    autocast = _autocast(x, dtype)

    def forward():
        with torch.inference_mode(mode == 'inference'), autocast:
            model(x)

    return forward


def _sdpa_backend(op_name: str) -> Optional[str]:
    """The SDPA backend that a profiler op name belongs to, None for other
    ops and for backward ops."""
    if op_name.endswith('_backward'):
        return None
    for prefix, backend in SDPA_BACKEND_OPS:
        if op_name.startswith(prefix):
            return backend
    return None


def _inside_sdpa_op(event) -> bool:
    parent = event.cpu_parent
    while parent is not None:
        if _sdpa_backend(parent.name) is not None:
            return True
        parent = parent.cpu_parent
    return False


def sdpa_backends(fn: Callable[[], None]) -> Dict[str, int]:
    """How many times one call of ``fn`` ran each backend of
    ``torch.nn.functional.scaled_dot_product_attention``.

    The backends are told by the kernel ops that ``torch.profiler`` records
    on the host (:data:`SDPA_BACKEND_OPS`), alike on every device. A kernel
    op called by another (``_efficient_attention_forward`` by
    ``_scaled_dot_product_efficient_attention``) counts once, and backward
    ops do not count. Ops that ``torch.compile`` traces while compiling are
    recorded too: call ``fn`` once before.

    Args:
        fn (Callable): What to run once, under the profiler.

    Returns:
        dict: Calls per backend, e.g. ``{'flash': 12, 'math': 4}``
        (``'flash_cpu'`` is the CPU flash kernel), sorted by name; empty
        when ``fn`` attends without SDPA.
    """
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    counts: Dict[str, int] = {}
    for event in prof.events():
        backend = _sdpa_backend(event.name)
        if backend is not None and not _inside_sdpa_op(event):
            counts[backend] = counts.get(backend, 0) + 1
    return dict(sorted(counts.items()))


def weights_mib(model: nn.Module) -> float:
    """Size of a model's parameters and buffers in MiB."""
    return sum(
        t.numel() * t.element_size()
        for t in itertools.chain(model.parameters(), model.buffers())) / 2**20


def _status_mib(field: str) -> Optional[float]:
    """A memory field of ``/proc/self/status`` (``'VmRSS'``) in MiB, None
    where there is none."""
    try:
        with open('/proc/self/status') as f:
            for line in f:
                if line.startswith(f'{field}:'):
                    return int(line.split()[1]) / 2**10  # kB
    except OSError:
        pass
    return None


def reset_peak_rss() -> bool:
    """Reset this process's resident high-water mark to its resident size
    (Linux: ``/proc/self/clear_refs``); returns whether it could."""
    try:
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')
    except OSError:
        return False
    return True


def peak_rss_mib() -> Optional[float]:
    """The resident high-water mark of this process in MiB (since the last
    :func:`reset_peak_rss`, where it worked), None where neither
    ``/proc/self/status`` nor the ``resource`` module is there."""
    peak = _status_mib('VmHWM')
    if peak is not None:
        return peak
    try:
        import resource
    except ImportError:
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux counts KiB, macOS bytes.
    return peak / (2**20 if sys.platform == 'darwin' else 2**10)


def time_model(model: nn.Module,
               setting: Setting,
               mode: str,
               dtype: torch.dtype,
               device: torch.device,
               warmup: int = 5,
               repeats: int = 20,
               count_sdpa: bool = True) -> dict:
    """Median latency, throughput and peak memory of one model, and the
    SDPA backends of its forward.

    The peak memory is what this model's calls need: its parameters and
    buffers plus the peak allocated above what was allocated before them
    (inputs, activations, gradients, optimiser state), so that other models
    held on the device do not count.

    Args:
        model (nn.Module): The model to time.
        setting (Setting): Input size and batch.
        mode (str): ``'inference'`` or ``'train'`` (a training step).
        dtype (torch.dtype): ``torch.float32``, or the autocast dtype.
        device (torch.device): Where the model is.
        warmup (int): Untimed calls first. Defaults to 5.
        repeats (int): Timed calls. Defaults to 20.
        count_sdpa (bool): Profile one forward between the untimed and the
            timed calls for :func:`sdpa_backends` (``sdpa_backends`` of the
            result; None if False). Defaults to True.
    """
    cuda = device.type == 'cuda'
    x = torch.randn(setting.batch, 3, setting.height, setting.width,
                    device=device)
    if cuda:
        torch.cuda.synchronize(device)
        baseline = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
    step = _step_fn(model, x, mode, dtype)
    for _ in range(warmup):
        step()
    # After the untimed calls, so that torch.compile has compiled; a
    # forward only, so that the timed steps start from the same weights.
    backends = (
        sdpa_backends(_forward_fn(model, x, mode, dtype))
        if count_sdpa else None)
    latency = median_seconds(step, device, 0, repeats)
    peak = None
    if cuda:
        peak = (torch.cuda.max_memory_allocated(device) - baseline +
                x.numel() * x.element_size()) / 2**20 + weights_mib(model)
    return dict(
        latency_ms=latency * 1e3,
        images_per_s=setting.batch / latency,
        peak_memory_mib=peak,
        sdpa_backends=backends)


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


def _failure(error: BaseException, stage: str) -> Tuple[str, str]:
    """The status and reason of what ``error`` left unmeasured: 'mismatch',
    'out of memory' or 'error'."""
    if isinstance(error, ImplementationMismatch):
        return 'mismatch', str(error)
    # The first line is enough for the table (CUDA's out-of-memory message
    # goes on about the allocator).
    lines = str(error).strip().splitlines() or ['']
    reason = f'{stage}: {type(error).__name__}: {lines[0][:300]}'
    return ('out of memory' if _is_oom(error) else 'error'), reason


def _recorded_failure(error: BaseException,
                      what: str,
                      device: torch.device,
                      log: Callable[[str], None],
                      context: Optional[str] = None) -> Tuple[str, str]:
    """:func:`_failure`'s status and reason, logged (with ``context`` first
    if given, and the traceback of an unexpected error), after freeing the
    cached GPU memory the failed call left."""
    status, reason = _failure(error, what)
    if context is not None:
        log(f'{context}: {status}: {reason}')
    if status == 'error':
        log(traceback.format_exc())
    if device.type == 'cuda':
        torch.cuda.empty_cache()
    return status, reason


def _measure(model: nn.Module,
             setting: Setting,
             mode: str,
             dtype: str,
             device: torch.device,
             warmup: int,
             repeats: int,
             log: Callable[[str], None],
             count_sdpa: bool = True) -> dict:
    """:func:`time_model` with ``status`` 'ok', or the status ('out of
    memory', 'error') and ``error``, the reason, of its failure."""
    try:
        timing = time_model(model, setting, mode, DTYPES[dtype], device,
                            warmup, repeats, count_sdpa)
    except Exception as error:  # noqa: B902  (recorded; the run goes on)
        status, reason = _recorded_failure(error, f'{mode} {dtype}', device,
                                           log)
        return dict(status=status, error=reason)
    return dict(
        timing,
        status='ok',
        refined_attention_backends=refined_attention_backends(model))


def refined_attention_backends(model: nn.Module) -> Dict[str, int]:
    """How the refiner blocks of ``model`` computed their refined maps in
    their last call: blocks per backend (``'fused'``, ``'chunked'``,
    ``'whole_map'``; see ``RefinedAttention.backend``); empty for models
    without refiner blocks."""
    counts: Dict[str, int] = {}
    for module in model.modules():
        backend = getattr(module, 'backend', None)
        if isinstance(backend, str) and hasattr(module, 'refinement'):
            counts[backend] = counts.get(backend, 0) + 1
    return counts


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
    isolate: bool
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
        return compiled(model, impl)


def compiled(model: nn.Module, impl: str) -> nn.Module:
    """``model`` as ``impl`` runs it: under ``torch.compile`` in the mode of
    :data:`COMPILE_MODES`, or as it is."""
    if impl not in COMPILE_MODES:
        return model
    return torch.compile(model, mode=COMPILE_MODES[impl])


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


def _new_record(name: str, setting: Setting, mode: str, dtype: str, impl: str,
                params: Optional[int], macs: Optional[float],
                rel_error: Optional[float]) -> dict:
    return dict(
        model=name,
        setting=str(setting),
        height=setting.height,
        width=setting.width,
        batch=setting.batch,
        mode=mode,
        dtype=dtype,
        impl=impl,
        params=params,
        gflops_per_image=macs / 1e9 if macs else None,
        agreement_rel_error=rel_error)


def _unmeasured_records(name: str, setting: Setting, params: Optional[int],
                        status: str, reason: str, rel_error: Optional[float],
                        run: _Run) -> Iterator[dict]:
    """A record per (mode, dtype, impl) of a setting that could not be
    measured, with its status and reason."""
    for mode, dtype, impl in itertools.product(run.modes, run.dtypes,
                                               run.impls):
        record = _new_record(name, setting, mode, dtype, impl, params, None,
                             rel_error)
        record.update(status=status, error=reason)
        yield record


# What a fresh process runs for ``isolate=True`` (``python -c``): its
# arguments are the name of one of :data:`_ISOLATED_TASKS`, the task's
# description and the path of its result.
_ISOLATED_CODE = ('import sys\n'
                  'from mmscalable.analysis.benchmark import '
                  'run_isolated_task\n'
                  'run_isolated_task(*sys.argv[1:4])\n')


def run_isolated_task(kind: str, task: str, result_path: str) -> None:
    """Run one task of ``isolate=True`` in this process: ``kind`` is
    ``'check'`` (:func:`check_isolated`) or ``'measure'``
    (:func:`measure_isolated`)."""
    if kind not in _ISOLATED_TASKS:
        raise ValueError(f'unknown isolated task {kind!r}; one of '
                         f'{sorted(_ISOLATED_TASKS)}')
    _ISOLATED_TASKS[kind](task, result_path)


def check_isolated(task: str, result_path: str) -> None:
    """Check agreement (and count the FLOPs) of one model at one size in
    this process and write the outcome to ``result_path`` (JSON): ``params``
    with ``rel_error`` and ``macs``, or ``status`` and ``error`` (with
    ``rel_error`` for a mismatch).

    Args:
        task (str): JSON of ``model`` (a name that :func:`resolve_builder`
            knows), ``setting``, ``device`` and ``count_model_flops``.
        result_path (str): Where to write the outcome.
    """
    task = json.loads(task)
    device = torch.device(task['device'])
    setting = Setting.parse(task['setting'])
    pair = _ModelPair.build(resolve_builder(task['model']), device)
    run = _Run(device=device, modes=(), dtypes=(), impls=(), warmup=0,
               repeats=0, peak=None,
               count_model_flops=task['count_model_flops'], isolate=True,
               log=print)
    outcome = dict(params=pair.params)
    try:
        outcome['rel_error'], outcome['macs'] = _check_setting(
            task['model'], setting, pair, run)
    except Exception as error:  # noqa: B902  (reported to the parent)
        outcome['status'], outcome['error'] = _recorded_failure(
            error, 'agreement check', device, print)
        outcome['rel_error'] = getattr(error, 'rel_error', None)
    with open(result_path, 'w') as f:
        json.dump(outcome, f)


def measure_isolated(task: str, result_path: str) -> None:
    """Measure one record in this process and write the measurement to
    ``result_path`` (JSON): what ``isolate=True`` runs in a fresh process
    per record.

    The model is built alone, from the same seed as in the calling process.
    ``base_rss_mib`` is this process's resident size before the model is
    built (interpreter and imports), ``peak_rss_mib`` its resident
    high-water mark at the end: since then where it can be reset (Linux),
    else over the whole process (the imports' own peak included).

    Args:
        task (str): JSON of ``model`` (a name that :func:`resolve_builder`
            knows), ``setting``, ``mode``, ``dtype``, ``impl``, ``device``,
            ``warmup`` and ``repeats``.
        result_path (str): Where to write the measurement.
    """
    task = json.loads(task)
    device = torch.device(task['device'])
    builder = resolve_builder(task['model'])
    # Importing leaves a peak of its own (1 GiB with torch's CUDA build)
    # that would hide small models.
    reset_peak_rss()
    base = _status_mib('VmRSS') or peak_rss_mib()
    torch.manual_seed(0)
    impl = task['impl']
    model = builder('reference' if impl == 'reference' else 'fast').to(device)
    measurement = dict(weights_mib=weights_mib(model))
    model = compiled(model, impl)
    setting = Setting.parse(task['setting'])
    # The profiler's own allocations would count in the peak: the SDPA
    # backends are read after it.
    measurement.update(
        _measure(model, setting, task['mode'], task['dtype'], device,
                 task['warmup'], task['repeats'], print, count_sdpa=False))
    measurement.update(peak_rss_mib=peak_rss_mib(), base_rss_mib=base)
    if measurement['status'] == 'ok':
        x = torch.randn(setting.batch, 3, setting.height, setting.width,
                        device=device)
        measurement['sdpa_backends'] = sdpa_backends(
            _forward_fn(model, x, task['mode'], DTYPES[task['dtype']]))
    with open(result_path, 'w') as f:
        json.dump(measurement, f)


_ISOLATED_TASKS = dict(check=check_isolated, measure=measure_isolated)


def _child_env() -> Dict[str, str]:
    """This environment, with the folder that holds this package first on
    ``PYTHONPATH`` unless it is a site-packages folder (a checkout that is
    not installed, as the command-line tool runs it)."""
    env = dict(os.environ)
    package_root = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
    if osp.basename(package_root) not in ('site-packages', 'dist-packages'):
        env['PYTHONPATH'] = os.pathsep.join(
            filter(None, [package_root, env.get('PYTHONPATH')]))
    return env


def _run_isolated(kind: str, task: dict, run: _Run) -> dict:
    """The result of one task of :func:`run_isolated_task` in a fresh
    process, or the status and reason of the process's failure (killed as
    the out-of-memory killer does, crashed on a signal, or exited with an
    error)."""
    with tempfile.TemporaryDirectory() as folder:
        result_path = osp.join(folder, 'result.json')
        child = subprocess.run(
            [sys.executable, '-c', _ISOLATED_CODE, kind,
             json.dumps(task), result_path],
            env=_child_env(),
            capture_output=True,
            text=True)
        if child.returncode == 0 and osp.isfile(result_path):
            with open(result_path) as f:
                return json.load(f)
    if child.returncode == -signal.SIGKILL:
        return dict(
            status='out of memory',
            error='the process running it was killed (SIGKILL), as the '
            'out-of-memory killer does')
    output = (child.stdout + child.stderr).strip()
    run.log(output[-3000:])
    if child.returncode < 0:
        name = signal.Signals(-child.returncode).name
        return dict(
            status='error',
            error=f'the process running it crashed ({name})')
    last = output.splitlines()[-1][:300] if output else ''
    return dict(
        status='error',
        error=f'the process running it exited with {child.returncode}: '
        f'{last}')


def _measure_isolated_record(name: str, setting: Setting, mode: str,
                             dtype: str, impl: str, run: _Run) -> dict:
    """The measurement of one record in a fresh process, or the status and
    reason of its failure."""
    task = dict(
        model=name,
        setting=str(setting),
        mode=mode,
        dtype=dtype,
        impl=impl,
        device=str(run.device),
        warmup=run.warmup,
        repeats=run.repeats)
    return _run_isolated('measure', task, run)


def _check_isolated_setting(name: str, setting: Setting,
                            run: _Run) -> dict:
    """:func:`check_isolated`'s outcome for one size, from a fresh
    process; a crash of that process is recorded as the check's failure."""
    task = dict(model=name, setting=str(setting), device=str(run.device),
                count_model_flops=run.count_model_flops)
    outcome = _run_isolated('check', task, run)
    if 'status' in outcome:
        run.log(f'{name} {setting}: {outcome["status"]}: '
                f'{outcome["error"]}')
    else:
        run.log(f'{name} {setting}: fast and reference agree (relative '
                f'error {outcome["rel_error"]:.2g})')
    return outcome


def _time_record(name: str, setting: Setting, mode: str, dtype: str, impl: str,
                 pair: Optional[_ModelPair], params: int, rel_error: float,
                 macs: Optional[float], run: _Run) -> dict:
    """The record of one (mode, dtype, impl) at ``setting``: its timing, or
    the status and reason of its failure. ``pair`` is None when
    ``run.isolate`` (the model is built in the measuring process)."""
    record = _new_record(name, setting, mode, dtype, impl, params, macs,
                         rel_error)
    if run.isolate:
        record.update(
            _measure_isolated_record(name, setting, mode, dtype, impl, run))
    else:
        record['weights_mib'] = weights_mib(pair.reference if impl ==
                                            'reference' else pair.fast)
        try:
            record.update(
                _measure(
                    pair.model(impl), setting, mode, dtype, run.device,
                    run.warmup, run.repeats, run.log),
                peak_rss_mib=None)
        finally:
            if impl in COMPILE_MODES:
                torch._dynamo.reset()
    if record['status'] == 'ok' and macs and run.peak and dtype == 'bf16':
        work = 2 * macs * (3 if mode == 'train' else 1)
        record['peak_fraction'] = work * record['images_per_s'] / run.peak
    return record


def _model_records(name: str, builder: Callable[[str], nn.Module],
                   settings: Sequence[Setting], run: _Run) -> Iterator[dict]:
    """Every record of one model, as measured: per setting, the agreement
    check, then each (mode, dtype, impl). A failure to build or check gives
    records with its status and reason for what it leaves unmeasured."""
    if run.isolate:
        yield from _isolated_model_records(name, settings, run)
        return
    try:
        pair = _ModelPair.build(builder, run.device)
    except Exception as error:  # noqa: B902  (recorded; the run goes on)
        status, reason = _recorded_failure(error, 'build', run.device,
                                           run.log, name)
        for setting in settings:
            yield from _unmeasured_records(name, setting, None, status, reason,
                                           None, run)
        return
    try:
        for setting in settings:
            try:
                rel_error, macs = _check_setting(name, setting, pair, run)
            except Exception as error:  # noqa: B902  (recorded)
                status, reason = _recorded_failure(
                    error, 'agreement check', run.device, run.log,
                    f'{name} {setting}')
                yield from _unmeasured_records(
                    name, setting, pair.params, status, reason,
                    getattr(error, 'rel_error', None), run)
                continue
            for mode, dtype, impl in itertools.product(run.modes, run.dtypes,
                                                       run.impls):
                yield _time_record(name, setting, mode, dtype, impl, pair,
                                   pair.params, rel_error, macs, run)
    finally:
        del pair
        if run.device.type == 'cuda':
            torch.cuda.empty_cache()


def _isolated_model_records(name: str, settings: Sequence[Setting],
                            run: _Run) -> Iterator[dict]:
    """:func:`_model_records` with ``run.isolate``: the check of each size
    and each record run in fresh processes; this one builds no model."""
    for setting in settings:
        outcome = _check_isolated_setting(name, setting, run)
        if 'status' in outcome:
            yield from _unmeasured_records(name, setting,
                                           outcome.get('params'),
                                           outcome['status'],
                                           outcome['error'],
                                           outcome.get('rel_error'), run)
            continue
        for mode, dtype, impl in itertools.product(run.modes, run.dtypes,
                                                   run.impls):
            yield _time_record(name, setting, mode, dtype, impl, None,
                               outcome['params'], outcome['rel_error'],
                               outcome['macs'], run)


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
                  log: Callable[[str], None] = print,
                  isolate: bool = False,
                  out_prefix: Optional[str] = None) -> dict:
    """Benchmark every combination; returns the JSON-ready results.

    A model that cannot be built, fails its agreement check or fails while
    timed gets records with ``status`` 'mismatch', 'error' or 'out of
    memory' and the reason (``error``), and the run goes on
    (:func:`failed_records` lists those that are not measurements).

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
        isolate (bool): Measure each record in a fresh process, which
            records its peak resident memory (``peak_rss_mib``); needs
            named models or config paths, not ``builders``.
            Defaults to False.
        out_prefix (str, optional): Rewrite ``<out_prefix>.json`` and
            ``<out_prefix>.md`` after every record (see
            :func:`write_outputs`).
    """
    if isolate and builders is not None:
        raise ValueError('isolate=True builds each model by its name in a '
                         'fresh process: it takes named models and config '
                         'paths, not builders')
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
        isolate=isolate,
        log=log)
    results = dict(
        device=(torch.cuda.get_device_name(device)
                if device.type == 'cuda' else 'cpu'),
        torch=torch.__version__,
        bf16_peak_flops=run.peak,
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


def failed_records(results: dict) -> List[dict]:
    """The records left unmeasured because something is wrong (status in
    :data:`FAILED_STATUSES`: a mismatch, an error)."""
    return [
        r for r in results['records'] if r.get('status') in FAILED_STATUSES
    ]


def _backends_text(backends: Optional[Dict[str, int]]) -> str:
    return ', '.join(f'{name} {count}'
                     for name, count in (backends or {}).items())


def format_record(record: dict) -> str:
    head = (f"{record['model']} {record['setting']} {record['mode']} "
            f"{record['dtype']} {record['impl']}: ")
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
    if record.get('sdpa_backends'):
        text += f", SDPA {_backends_text(record['sdpa_backends'])}"
    if record.get('refined_attention_backends'):
        text += (', refined attention '
                 f"{_backends_text(record['refined_attention_backends'])}")
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
        for impl in ('fast', *COMPILE_MODES):
            r = by_impl.get(impl)
            ok = (ref is not None and r is not None
                  and ref.get('status') == r.get('status') == 'ok')
            row[f'{impl}_speedup'] = (
                r['images_per_s'] / ref['images_per_s'] if ok else None)
            row[f'{impl}_memory_ratio'] = (
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
    return _backends_text(record.get('sdpa_backends')) or 'none'


def _failure_notes(records: Sequence[dict]) -> List[str]:
    """One line per (model, setting, status, reason) left unmeasured."""
    notes = {}
    for r in records:
        if r.get('status') != 'ok' and r.get('error'):
            key = (r['model'], r['setting'], r['status'], r['error'])
            notes.setdefault(
                key, []).append(f"{r['mode']} {r['dtype']} {r['impl']}")
    lines = []
    for (model, setting, status, reason), which in notes.items():
        lines.append(f'- {model} {setting} ({len(which)} records): '
                     f'{status}: {reason}')
    return lines


def markdown_table(results: dict) -> str:
    """One row per (model, setting, mode, dtype), implementations side by
    side; below it, what was left unmeasured and why."""
    records = results['records']
    impls = [i for i in IMPLS if any(r['impl'] == i for r in records)]
    # Columns that this run cannot fill are left out (GPU memory on a CPU,
    # peak RSS without isolation, SDPA where nothing ran it, and the
    # columns that earlier versions did not record).
    with_memory = any(r.get('peak_memory_mib') is not None for r in records)
    with_fraction = any(r.get('peak_fraction') is not None for r in records)
    with_weights = any(r.get('weights_mib') is not None for r in records)
    with_rss = any(r.get('peak_rss_mib') is not None for r in records)
    sdpa_impls = [
        i for i in impls
        if any(r['impl'] == i and r.get('sdpa_backends') for r in records)
    ]
    header = ['model', 'HxW:batch', 'mode', 'dtype', 'GFLOPs']
    header += [f'{i} img/s' for i in impls]
    header += [f'{i} ms' for i in impls]
    header += ['weights MiB'] if with_weights else []
    header += [f'{i} peak MiB' for i in impls] if with_memory else []
    header += [f'{i} peak RSS MiB' for i in impls] if with_rss else []
    header += ['fast / ref']
    header += [f'{i} / ref' for i in COMPILE_MODES if i in impls]
    header += ['fast % bf16 peak'] if with_fraction else []
    header += [f'{i} SDPA' for i in sdpa_impls]
    about = (f"Device: {results['device']}, torch {results['torch']}, "
             f"median of {results['repeats']} after {results['warmup']} "
             'warm-up calls.')
    if with_rss:
        about += (' Peak RSS: resident high-water mark of a fresh process '
                  'per record while it builds the model and runs the calls, '
                  'interpreter and imports included.')
    lines = [
        about, '', '| ' + ' | '.join(header) + ' |',
        '|' + ' --- |' * len(header)
    ]
    ratios = {(s['model'], s['setting'], s['mode'], s['dtype']): s
              for s in speedups(results)}
    for key, by_impl in _group(records).items():
        any_record = next(iter(by_impl.values()))
        gflops = any_record.get('gflops_per_image')
        cells = list(key) + [f'{gflops:.2f}' if gflops else '-']
        cells += [_cell(by_impl.get(i), 'images_per_s', '.1f') for i in impls]
        cells += [_cell(by_impl.get(i), 'latency_ms', '.2f') for i in impls]
        if with_weights:
            weights = next((r['weights_mib'] for r in by_impl.values()
                            if r.get('weights_mib') is not None), None)
            cells.append('-' if weights is None else f'{weights:.1f}')
        if with_memory:
            cells += [
                _cell(by_impl.get(i), 'peak_memory_mib', '.0f')
                for i in impls
            ]
        if with_rss:
            cells += [
                _cell(by_impl.get(i), 'peak_rss_mib', '.0f') for i in impls
            ]
        for impl in ['fast'] + [i for i in COMPILE_MODES if i in impls]:
            speedup = ratios[key][f'{impl}_speedup']
            cells.append('-' if speedup is None else f'{speedup:.2f}x')
        if with_fraction:
            fraction = (by_impl.get('fast') or {}).get('peak_fraction')
            cells.append('-' if fraction is None else
                         f'{100 * fraction:.1f}%')
        cells += [_sdpa_cell(by_impl.get(i)) for i in sdpa_impls]
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
    half-written."""
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
