# Copyright (c) mmscalable contributors. All rights reserved.
"""Conv fusion of Group-Mix Attention's fast path.

Several depthwise convs of different kernel sizes on consecutive channel
groups run as one conv with kernels zero-padded to the largest size; frozen
BatchNorms fold into the conv before them; the fused weights are kept
between inference calls (:class:`InferenceCache`). Whether the padded
one-launch convs run on a device is decided by
``attention_impl.uses_one_launch``.
"""
from typing import Callable, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor


def pad_kernel(weight: Tensor, size: int) -> Tensor:
    """Zero-pad a (C, 1, k, k) depthwise kernel to (C, 1, size, size).

    A centred k x k kernel with padding k // 2 and its zero-padded
    ``size x size`` version with padding ``size // 2`` give the same output,
    so depthwise convs of several (odd) kernel sizes run as one conv.
    """
    margin = (size - weight.shape[-1]) // 2
    if margin < 0 or weight.shape[-1] % 2 != size % 2:
        raise ValueError(f'cannot pad a {weight.shape[-1]}x'
                         f'{weight.shape[-1]} kernel to {size}x{size}')
    return F.pad(weight, (margin, ) * 4) if margin else weight


def padded_depthwise_weights(convs: Sequence[nn.Conv2d]
                             ) -> Tuple[Tensor, Optional[Tensor]]:
    """The kernels (zero-padded to the largest) and biases of depthwise
    convs on consecutive channel groups, as one conv's."""
    size = max(conv.weight.shape[-1] for conv in convs)
    weight = torch.cat([pad_kernel(conv.weight, size) for conv in convs])
    biases = [conv.bias for conv in convs]
    bias = None if biases[0] is None else torch.cat(biases)
    return weight, bias


def grouped_depthwise(x: Tensor,
                      convs: Sequence[nn.Conv2d],
                      splits: Sequence[int],
                      padded: Optional[Tuple[Tensor, Optional[Tensor]]] = None
                      ) -> Tensor:
    """Depthwise convs of several kernel sizes on consecutive channel
    groups of ``x`` (``splits`` channels each): one conv with the
    ``padded`` weights of :func:`padded_depthwise_weights` if given, else one
    conv per group."""
    if padded is not None:
        weight, bias = padded
        return F.conv2d(
            x, weight, bias, padding=weight.shape[-1] // 2,
            groups=x.shape[1])
    return torch.cat(
        [conv(part) for conv, part in zip(convs, x.split(splits, dim=1))],
        dim=1)


def fold_batch_norm(norm: nn.modules.batchnorm._BatchNorm
                    ) -> Tuple[Tensor, Tensor]:
    """Scale and shift of a BatchNorm that uses its running statistics."""
    scale = torch.rsqrt(norm.running_var + norm.eps)
    if norm.weight is not None:
        scale = scale * norm.weight
    shift = -norm.running_mean * scale
    if norm.bias is not None:
        shift = shift + norm.bias
    return scale, shift


class InferenceCache:
    """Tensors derived from parameters, rebuilt only when those change.

    The fast paths concatenate and fold several modules' parameters into
    one conv's. With autograd recording that is done every call (it is part
    of the graph); without, the result is kept until a source tensor is
    replaced (a new Parameter), modified in place (optimiser steps,
    ``load_state_dict``: its version counter moves) or given new data
    (``module.half()``, ``.to(device)``, ``param.data = ...`` keep the
    Parameter and its version counter, so its dtype, device and storage are
    compared too). The cache holds the sources themselves, so a replaced
    tensor cannot be mistaken for a new one at the same address. Under
    ``torch.compile`` nothing is cached: the compiler fuses the derivation
    itself.
    """

    def __init__(self) -> None:
        self._sources: Sequence[Tensor] = ()
        self._states: Sequence[tuple] = ()
        self._value = None

    @staticmethod
    def _state(tensor: Tensor) -> tuple:
        return (tensor._version, tensor.dtype, tensor.device,
                tensor.data_ptr(), tensor.shape)

    def _is_current(self, sources: Sequence[Tensor]) -> bool:
        return (len(sources) == len(self._sources) and all(
            new is old and self._state(new) == state for new, old, state in
            zip(sources, self._sources, self._states)))

    def get(self, sources: Sequence[Tensor], build: Callable):
        if (torch.is_grad_enabled() or torch.compiler.is_compiling()
                or torch.jit.is_tracing()):
            return build()
        if not self._is_current(sources):
            self._value = build()
            self._sources = tuple(sources)
            self._states = tuple(self._state(t) for t in sources)
        return self._value
