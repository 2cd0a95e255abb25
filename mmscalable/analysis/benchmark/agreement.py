# Copyright (c) mmscalable contributors. All rights reserved.
"""The check that fast and reference compute the same before either is
timed."""
import math
from typing import Callable, Optional, Tuple

import torch
import torch.nn as nn

from .flop_count import count_flops
from .models import ModelPair, Setting


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


def check_agreement(reference: nn.Module,
                    fast: nn.Module,
                    setting: Setting,
                    device: torch.device,
                    rtol: float = 1e-4) -> float:
    """Largest relative difference of fast and reference outputs on one
    image in fp32 (eval mode, TF32 off); raises if above ``rtol``.

    Models with an ``agreement_forward`` (whole detectors) are compared on
    what it returns.

    Args:
        reference (nn.Module): The reference path.
        fast (nn.Module): The fast path, with the same weights.
        setting (Setting): The input size (the batch is one image).
        device (torch.device): Where both models are.
        rtol (float): The largest relative difference allowed.
            Defaults to 1e-4.
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


def check_setting(name: str, setting: Setting, pair: ModelPair,
                  device: torch.device, count_model_flops: bool,
                  log: Callable[[str], None]
                  ) -> Tuple[float, Optional[float]]:
    """Agreement of fast and reference at ``setting`` (raises when they
    differ) and the multiply-adds of one image, or None.

    Args:
        name (str): The model's name, for the log.
        setting (Setting): The input size.
        pair (ModelPair): Both implementations of the model.
        device (torch.device): Where they are.
        count_model_flops (bool): Count the reference's FLOPs.
        log (Callable): Progress printer.
    """
    error = check_agreement(pair.reference, pair.fast, setting, device)
    macs = (
        count_flops(pair.reference, setting, device)
        if count_model_flops else None)
    log(f'{name} {setting}: fast and reference agree '
        f'(relative error {error:.2g}); ' +
        (f'{macs / 1e9:.2f} GFLOPs' if macs else 'FLOPs not counted'))
    return error, macs
