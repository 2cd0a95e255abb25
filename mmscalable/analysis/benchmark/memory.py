# Copyright (c) mmscalable contributors. All rights reserved.
"""How much memory a model's calls need: its weights, the peak allocated on
the GPU, and the resident high-water mark of the process (CPU).

The GPU figure is what one model's calls need (its weights, plus the peak
of ``torch.cuda.max_memory_allocated`` above the memory held before them),
so that other models held on the device do not count. The resident mark
covers the whole process: the benchmark reads it in a fresh process per
record (``isolation.py``).
"""
import itertools
import sys
from typing import Optional

import torch
import torch.nn as nn


def weights_mib(model: nn.Module) -> float:
    """Size of a model's parameters and buffers in MiB."""
    return sum(
        t.numel() * t.element_size()
        for t in itertools.chain(model.parameters(), model.buffers())) / 2**20


def start_gpu_peak(device: torch.device) -> Optional[int]:
    """Start measuring the GPU peak on ``device``: the bytes allocated now
    (the baseline of :func:`gpu_peak_mib`), None on other devices."""
    if device.type != 'cuda':
        return None
    torch.cuda.synchronize(device)
    baseline = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    return baseline


def gpu_peak_mib(device: torch.device, baseline: Optional[int],
                 model: nn.Module, held_bytes: int) -> Optional[float]:
    """What ``model``'s calls since :func:`start_gpu_peak` needed in MiB:
    its weights, ``held_bytes`` allocated before that (the input) and the
    peak allocated above the baseline; None off a GPU.

    Args:
        device (torch.device): Where the model is.
        baseline (int, optional): What :func:`start_gpu_peak` returned.
        model (nn.Module): The model called.
        held_bytes (int): Bytes the calls need that were allocated before
            the baseline.
    """
    if baseline is None:
        return None
    peak = torch.cuda.max_memory_allocated(device) - baseline + held_bytes
    return peak / 2**20 + weights_mib(model)


def status_mib(field: str) -> Optional[float]:
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
    peak = status_mib('VmHWM')
    if peak is not None:
        return peak
    try:
        import resource
    except ImportError:
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux counts KiB, macOS bytes.
    return peak / (2**20 if sys.platform == 'darwin' else 2**10)
