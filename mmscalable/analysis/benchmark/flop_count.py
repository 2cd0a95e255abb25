# Copyright (c) mmscalable contributors. All rights reserved.
"""The FLOPs of one image, and the fraction of the GPU's bf16 peak and of
the machine's measured matmul throughput that a record achieved.

FLOPs are counted with mmengine's ``FlopAnalyzer`` (fvcore's convention:
one multiply-add is one FLOP, as the papers report them); the achieved
fractions count 2 FLOPs per multiply-add, and 3x the forward for a
training step. The matmul throughput is that of ``torch.mm`` on large
square matrices of the record's dtype, measured in the same run: how fast
this machine multiplies matrices at all, a CPU's limit as much as a GPU's.
"""
from typing import Dict, Optional, Sequence

import torch
import torch.nn as nn

from .models import Setting
from .timing import DTYPES, median_seconds

# The side of the square matrices whose product measures the matmul
# throughput: large enough for full speed (about 0.1 s per product in fp32
# on 2 CPU cores).
MATMUL_SIZE = 2048

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


def count_flops(model: nn.Module, setting: Setting,
                device: torch.device) -> Optional[float]:
    """Multiply-adds of one image's forward (fvcore convention), or None
    when mmengine's analysis is not available.

    Args:
        model (nn.Module): The model, on ``device``.
        setting (Setting): The input size (the batch is one image).
        device (torch.device): Where the model is.
    """
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


def peak_fraction(macs: float, mode: str, images_per_s: float,
                  peak: float) -> float:
    """The fraction of ``peak`` (FLOP/s) that ``images_per_s`` achieves:
    2 FLOPs per multiply-add, 3x the forward's for a training step.

    Args:
        macs (float): Multiply-adds of one image's forward.
        mode (str): ``'inference'`` or ``'train'``.
        images_per_s (float): The measured throughput.
        peak (float): The device's peak in FLOP/s.
    """
    work = 2 * macs * (3 if mode == 'train' else 1)
    return work * images_per_s / peak


def matmul_throughput(device: torch.device,
                      dtype: torch.dtype,
                      size: int = MATMUL_SIZE,
                      repeats: int = 3) -> float:
    """FLOP/s of ``torch.mm`` on two ``size`` x ``size`` matrices of
    ``dtype`` on ``device`` (median of ``repeats`` after one untimed)."""
    a = torch.randn(size, size, device=device).to(dtype)
    b = torch.randn(size, size, device=device).to(dtype)
    with torch.inference_mode():
        seconds = median_seconds(lambda: torch.mm(a, b), device, 1, repeats)
    return 2 * size**3 / seconds


def matmul_throughputs(device: torch.device, dtypes: Sequence[str],
                       size: int = MATMUL_SIZE) -> Dict[str, float]:
    """:func:`matmul_throughput` for each of ``dtypes`` (``'fp32'``,
    ``'bf16'``)."""
    return {
        dtype: matmul_throughput(device, DTYPES[dtype], size)
        for dtype in dtypes
    }
