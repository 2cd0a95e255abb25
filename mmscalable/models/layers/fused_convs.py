# Copyright (c) mmscalable contributors. All rights reserved.
"""Conv fusion of Group-Mix Attention's fast path.

Several depthwise convs of different kernel sizes on consecutive channel
groups run as one :func:`mmscalable.ops.group_mix_dwconv` (each group with its
own kernel size, read straight from the token layout) where its compiled
kernel exists, else as one conv per group; frozen BatchNorms fold into the
conv before them; the fused weights are kept between inference calls
(:class:`InferenceCache`).
"""
from typing import Callable, Optional, Sequence, Tuple

import torch
import torch.nn as nn
from torch import Tensor

from mmscalable.ops import has_compiled_kernel, pack_depthwise_weights
from mmscalable.torch_compat import is_compiling


def depthwise_op_applies(convs: Sequence[nn.Conv2d], x: Tensor) -> bool:
    """Whether :func:`mmscalable.ops.group_mix_dwconv` computes the
    depthwise ``convs`` (odd kernels, stride 1, 'same' zero padding) on
    ``x``'s device and dtype with its compiled kernel."""
    return all(
        conv.kernel_size[0] == conv.kernel_size[1]
        and conv.kernel_size[0] % 2 == 1 and conv.stride == (1, 1)
        and conv.dilation == (1, 1)
        and conv.padding == (conv.kernel_size[0] // 2, ) * 2
        and conv.padding_mode == 'zeros' and conv.groups == conv.in_channels
        == conv.out_channels for conv in convs) and has_compiled_kernel(x)


# On the CPU, maps of fewer pixels than this run faster as one oneDNN conv
# per group: measured on GroupMixFormer-S's proxy shapes, one thread, the op
# took 1.2-2.4x the time of the per-group convs at 7x7 to 56x56 maps, 0.8x
# at 64x64 and 0.5x at 128x128.
CPU_DEPTHWISE_OP_MIN_PIXELS = 64 * 64


# On a GPU, where a depthwise conv is bound by memory traffic, the choice is
# by the bytes each way moves, in units of the N = B * H * W * S * C input
# elements, per direction (the op's speed against cuDNN is measured by
# tools/misc/check_ops_cuda.py on a GPU machine):
#   forward      op: read the token view, write the map           2N
#                cuDNN: copy tokens to (S * B, C, H, W) (2N), conv 4N
#                (3.5N for the proxies, whose 1x1 segment needs no conv;
#                tools/analysis_tools/kernel_roofline.py counts per stage)
#   input grad   op: read the map's gradient, write the tokens'   2N
#                cuDNN: conv backward (2N), copy back to tokens   4N
#   weight grad  op: read the map's gradient and the token view   2N
#                cuDNN: the same reads of a contiguous copy, which
#                the op's path would have to make first (2N)      4N
GPU_BYTES_PER_ELEMENT = {
    'forward': {'op': 2, 'cudnn': 4},
    'input_grad': {'op': 2, 'cudnn': 4},
    'weight_grad': {'op': 2, 'cudnn': 4},
}


def depthwise_op_pays(x: Tensor, hw_shape: Sequence[int]) -> bool:
    """Whether :func:`mmscalable.ops.group_mix_dwconv` is the faster way to
    run depthwise convs on an (H, W) map of ``x``'s device: on the CPU for
    large maps only (measured); elsewhere where it moves fewer bytes than
    cuDNN's per-group convs in every direction
    (``GPU_BYTES_PER_ELEMENT``)."""
    if x.device.type == 'cpu':
        return hw_shape[0] * hw_shape[1] >= CPU_DEPTHWISE_OP_MIN_PIXELS
    return all(bytes_moved['op'] < bytes_moved['cudnn']
               for bytes_moved in GPU_BYTES_PER_ELEMENT.values())


def packed_depthwise(convs: Sequence[nn.Conv2d]
                     ) -> Tuple[Tensor, Optional[Tensor]]:
    """The kernels (packed for :func:`mmscalable.ops.group_mix_dwconv`) and
    biases of depthwise convs on consecutive channel groups."""
    weight = pack_depthwise_weights([conv.weight for conv in convs])
    biases = [conv.bias for conv in convs]
    bias = None if biases[0] is None else torch.cat(biases)
    return weight, bias


def grouped_depthwise(x: Tensor, convs: Sequence[nn.Conv2d],
                      splits: Sequence[int]) -> Tensor:
    """Depthwise convs of several kernel sizes on consecutive channel
    groups of the map ``x`` (``splits`` channels each), one conv per group."""
    return torch.cat(
        [conv(part) for conv, part in zip(convs, x.split(splits, dim=1))],
        dim=1)


def is_frozen_batch_norm(norm: nn.Module) -> bool:
    """A BatchNorm that normalises with its running statistics: one that
    :func:`fold_batch_norm` can fold into a linear map."""
    return (isinstance(norm, nn.modules.batchnorm._BatchNorm)
            and not norm.training and norm.running_mean is not None)


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
        if (torch.is_grad_enabled() or is_compiling()
                or torch.jit.is_tracing()):
            return build()
        if not self._is_current(sources):
            self._value = build()
            self._sources = tuple(sources)
            self._states = tuple(self._state(t) for t in sources)
        return self._value
