# Copyright (c) mmscalable contributors. All rights reserved.
"""How one model is timed: what a call is, warm-up, repeats and the median.

Timing uses CUDA events on a GPU and ``time.perf_counter`` on the CPU:
``warmup`` untimed calls, then the median of ``repeats`` timed ones
(``torch.compile`` compiles in the untimed calls). An inference call is a
forward under ``torch.inference_mode``; a training step is forward, a loss
over every output, backward and an AdamW step. ``torch.bfloat16`` runs
under ``torch.autocast``.
"""
import statistics
import time
from typing import Callable

import torch
import torch.nn as nn

from mmscalable.torch_compat import autocast
from .backends import sdpa_backends
from .memory import gpu_peak_mib, start_gpu_peak
from .models import Setting

MODES = ('inference', 'train')
DTYPES = {'fp32': torch.float32, 'bf16': torch.bfloat16}


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
    on a GPU, ``perf_counter`` on the CPU.

    Args:
        fn (Callable): What to time.
        device (torch.device): Where it runs.
        warmup (int): Untimed calls first.
        repeats (int): Timed calls.
    """
    timer = _Timer(torch.device(device))
    for _ in range(warmup):
        fn()
    return statistics.median([timer(fn) for _ in range(repeats)])


def _loss(outputs) -> torch.Tensor:
    outputs = outputs if isinstance(outputs, (tuple, list)) else [outputs]
    return sum(o.float().mean() for o in outputs)


def _autocast(x: torch.Tensor, dtype: torch.dtype):
    return autocast(
        x.device.type, dtype=dtype, enabled=dtype != torch.float32)


def step_fn(model: nn.Module, x: torch.Tensor, mode: str,
            dtype: torch.dtype) -> Callable[[], None]:
    """One call of ``mode`` on ``x``: an inference forward, or a training
    step (forward, loss, backward, AdamW step).

    Args:
        model (nn.Module): The model to call.
        x (torch.Tensor): Its input.
        mode (str): ``'inference'`` or ``'train'``.
        dtype (torch.dtype): ``torch.float32``, or the autocast dtype.
    """
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


def forward_fn(model: nn.Module, x: torch.Tensor, mode: str,
               dtype: torch.dtype) -> Callable[[], None]:
    """The forward of a :func:`step_fn` call (recording autograd for a
    training step), without backward and optimiser step: the weights stay
    as they are.

    Args:
        model (nn.Module): The model to call.
        x (torch.Tensor): Its input.
        mode (str): ``'inference'`` or ``'train'``.
        dtype (torch.dtype): ``torch.float32``, or the autocast dtype.
    """
    autocast = _autocast(x, dtype)

    def forward():
        with torch.inference_mode(mode == 'inference'), autocast:
            model(x)

    return forward


def time_model(model: nn.Module,
               setting: Setting,
               mode: str,
               dtype: torch.dtype,
               device: torch.device,
               warmup: int = 5,
               repeats: int = 20,
               count_sdpa: bool = True) -> dict:
    """Median latency, throughput and peak GPU memory of one model, and the
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
    x = torch.randn(setting.batch, 3, setting.height, setting.width,
                    device=device)
    baseline = start_gpu_peak(device)
    step = step_fn(model, x, mode, dtype)
    for _ in range(warmup):
        step()
    # After the untimed calls, so that torch.compile has compiled; a
    # forward only, so that the timed steps start from the same weights.
    backends = (
        sdpa_backends(forward_fn(model, x, mode, dtype))
        if count_sdpa else None)
    latency = median_seconds(step, device, 0, repeats)
    return dict(
        latency_ms=latency * 1e3,
        images_per_s=setting.batch / latency,
        peak_memory_mib=gpu_peak_mib(device, baseline, model,
                                     x.numel() * x.element_size()),
        sdpa_backends=backends)
