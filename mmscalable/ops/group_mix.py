# Copyright (c) mmscalable contributors. All rights reserved.
"""Group-Mix depthwise conv: depthwise convs of several kernel sizes on
consecutive channel groups, read straight from a token layout.

GroupMixFormer's attention convolves channel groups of q, k and v (the
group-proxy aggregators: 3x3, 5x5 and 7x7) and head groups of v (the
convolutional relative position encoding: 3x3, 5x5, 7x7 with bias). The
tokens come from a linear layer as (B, H * W, 3 * C); the official code
copies them to (3B, C, H, W) maps and runs one conv per group, and a one-conv
formulation zero-pads the kernels to the largest size (1.77x the taps).

:func:`group_mix_dwconv` does it in one pass without zero taps: it takes a
(B, H, W, S, C) view of any strides (``S`` streams that share the kernels,
e.g. q, k and v), convolves channel ``c`` of group ``g`` with its own
``k_g x k_g`` kernel (stride 1, zero padding ``k_g // 2``), optionally adds a
per-channel bias (a folded BatchNorm's shift) and applies Hardswish, and
writes a contiguous (S * B, C, H, W) map, streams outermost. The kernels are
packed flat, group after group, each channel's ``k x k`` taps row-major
(:func:`pack_depthwise_weights`).

The compiled kernels of ``mmscalable._ext`` are registered as the
``torch.ops.mmscalable.group_mix_dwconv`` op (and its backward), with
autograd and a fake implementation, so that ``torch.compile`` and
``torch.export`` keep it as one op. Without the extension, for devices or
dtypes it has no kernel, under ``MMSCALABLE_DISABLE_EXT=1``,
``torch.jit.trace`` or ONNX export, the pure-PyTorch reference runs instead.
"""
from typing import List, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from .ext_loader import has_compiled_kernel, register_op

OP_NAME = 'mmscalable::group_mix_dwconv'
BACKWARD_OP_NAME = 'mmscalable::group_mix_dwconv_backward'

_MAX_GROUPS = 8


def _check_args(input: Tensor, weight: Tensor, bias: Optional[Tensor],
                kernel_sizes: Sequence[int],
                group_channels: Sequence[int]) -> None:
    if input.dim() != 5:
        raise ValueError('group_mix_dwconv expects a 5-D (B, H, W, S, C) '
                         f'input, got shape {tuple(input.shape)}')
    if len(kernel_sizes) != len(group_channels) or not kernel_sizes:
        raise ValueError('group_mix_dwconv needs one kernel size per channel '
                         f'group, got kernel_sizes {list(kernel_sizes)} and '
                         f'group_channels {list(group_channels)}')
    if len(kernel_sizes) > _MAX_GROUPS:
        raise ValueError(f'group_mix_dwconv supports at most {_MAX_GROUPS} '
                         f'channel groups, got {len(kernel_sizes)}')
    if any(k < 1 or k % 2 == 0 or k > 31 for k in kernel_sizes):
        raise ValueError('group_mix_dwconv: kernel sizes must be odd, '
                         f'between 1 and 31, got {list(kernel_sizes)}')
    if any(c < 1 for c in group_channels):
        raise ValueError('group_mix_dwconv: every group needs at least one '
                         f'channel, got group_channels {list(group_channels)}')
    if sum(group_channels) != input.shape[4]:
        raise ValueError(
            f'group_mix_dwconv: group_channels {list(group_channels)} add up '
            f'to {sum(group_channels)} channels, but the input has '
            f'{input.shape[4]}')
    packed = sum(c * k * k for c, k in zip(group_channels, kernel_sizes))
    if weight.dim() != 1 or weight.numel() != packed:
        raise ValueError(
            'group_mix_dwconv: weight must be the packed kernels, 1-D with '
            f'sum(group_channels * kernel_size ** 2) = {packed} values, got '
            f'shape {tuple(weight.shape)}')
    if bias is not None and tuple(bias.shape) != (input.shape[4], ):
        raise ValueError('group_mix_dwconv: bias must have one value per '
                         f'channel ({input.shape[4]}), got shape '
                         f'{tuple(bias.shape)}')
    for name, tensor in (('weight', weight), ('bias', bias)):
        if tensor is not None and (tensor.dtype != input.dtype
                                   or tensor.device != input.device):
            raise ValueError(
                f'group_mix_dwconv: {name} is {tensor.dtype} on '
                f'{tensor.device}, the input {input.dtype} on {input.device}')


def pack_depthwise_weights(weights: Sequence[Tensor]) -> Tensor:
    """Pack depthwise kernels (C_g, 1, k_g, k_g) into the op's 1-D weight.

    Args:
        weights (Sequence[Tensor]): One depthwise conv weight per group, in
            channel order.

    Returns:
        Tensor: The kernels flattened and concatenated.
    """
    return torch.cat([weight.reshape(-1) for weight in weights])


def unpack_depthwise_weights(weight: Tensor, kernel_sizes: Sequence[int],
                             group_channels: Sequence[int]) -> List[Tensor]:
    """Inverse of :func:`pack_depthwise_weights`: (C_g, 1, k_g, k_g) views."""
    sizes = [c * k * k for c, k in zip(group_channels, kernel_sizes)]
    return [
        part.view(c, 1, k, k) for part, c, k in zip(
            weight.split(sizes), group_channels, kernel_sizes)
    ]


def group_mix_dwconv_reference(input: Tensor,
                               weight: Tensor,
                               bias: Optional[Tensor],
                               kernel_sizes: Sequence[int],
                               group_channels: Sequence[int],
                               hardswish: bool = False) -> Tensor:
    """Pure-PyTorch :func:`group_mix_dwconv`: the (S * B, C, H, W) map and
    one ``F.conv2d`` per group.

    Args:
        input (Tensor): (B, H, W, S, C), any strides.
        weight (Tensor): Packed kernels (see :func:`pack_depthwise_weights`).
        bias (Tensor, optional): One value per channel.
        kernel_sizes (Sequence[int]): Odd kernel side of every group.
        group_channels (Sequence[int]): Channels of every group; they add
            up to C.
        hardswish (bool): Apply Hardswish after the bias. Defaults to False.

    Returns:
        Tensor: Contiguous (S * B, C, H, W).
    """
    _check_args(input, weight, bias, kernel_sizes, group_channels)
    B, H, W, S, C = input.shape
    maps = input.permute(3, 0, 4, 1, 2).reshape(S * B, C, H, W)
    kernels = unpack_depthwise_weights(weight, kernel_sizes, group_channels)
    out = torch.cat([
        F.conv2d(part, kernel, padding=kernel.shape[-1] // 2, groups=c)
        for part, kernel, c in zip(
            maps.split(list(group_channels), dim=1), kernels, group_channels)
    ],
                    dim=1)
    if bias is not None:
        out = out + bias.view(-1, 1, 1)
    if hardswish:
        out = F.hardswish(out)
    return out.contiguous()


def _fake_forward(input, weight, bias, kernel_sizes, group_channels,
                  hardswish=False):
    B, H, W, S, C = input.shape
    return input.new_empty((S * B, C, H, W))


def _fake_backward(grad_output, input, weight, kernel_sizes, group_channels,
                   output_mask):
    grad_input = (
        input.new_empty(input.shape) if output_mask[0] else
        input.new_empty((0, )))
    grad_weight = (
        weight.new_empty(weight.shape) if output_mask[1] else
        weight.new_empty((0, )))
    return grad_input, grad_weight


def _setup_context(ctx, inputs, output):
    input, weight, bias, kernel_sizes, group_channels, hardswish = (
        inputs + (False, ))[:6]
    ctx.hardswish = hardswish
    ctx.save_for_backward(input, weight)
    ctx.kernel_sizes = list(kernel_sizes)
    ctx.group_channels = list(group_channels)
    ctx.has_bias = bias is not None


def _backward(ctx, grad_output):
    if ctx.hardswish:
        raise RuntimeError(
            'group_mix_dwconv: the fused Hardswish has no backward; apply '
            'it outside the op when gradients are needed')
    input, weight = ctx.saved_tensors
    mask = [ctx.needs_input_grad[0], ctx.needs_input_grad[1]]
    grad_input = grad_weight = grad_bias = None
    if mask[0] or mask[1]:
        grad_input, grad_weight = torch.ops.mmscalable.\
            group_mix_dwconv_backward(grad_output, input, weight,
                                      ctx.kernel_sizes, ctx.group_channels,
                                      mask)
        grad_input = grad_input if mask[0] else None
        grad_weight = grad_weight if mask[1] else None
    if ctx.has_bias and ctx.needs_input_grad[2]:
        grad_bias = grad_output.sum((0, 2, 3))
    return grad_input, grad_weight, grad_bias, None, None, None


register_op(
    OP_NAME, _fake_forward, backward=_backward, setup_context=_setup_context)
register_op(BACKWARD_OP_NAME, _fake_backward)


def group_mix_dwconv(input: Tensor,
                     weight: Tensor,
                     bias: Optional[Tensor],
                     kernel_sizes: Sequence[int],
                     group_channels: Sequence[int],
                     hardswish: bool = False) -> Tensor:
    """Depthwise convs of several kernel sizes on channel groups of a
    strided token layout, with an optional bias and Hardswish.

    The compiled op runs on the CPU and, when built with CUDA, on CUDA
    devices; its CUDA kernel is checked against the reference but its speed
    there has not been measured yet.

    Args:
        input (Tensor): (B, H, W, S, C), any strides, e.g.
            ``qkv.view(B, H, W, 3, C_stream)[..., c0:c1]`` for channels of q,
            k and v tokens.
        weight (Tensor): Packed kernels (see :func:`pack_depthwise_weights`).
        bias (Tensor, optional): One value per channel.
        kernel_sizes (Sequence[int]): Odd kernel side of every group.
        group_channels (Sequence[int]): Channels of every group; they add
            up to C.
        hardswish (bool): Apply Hardswish after the bias (inference only:
            the fused activation has no backward). Defaults to False.

    Returns:
        Tensor: Contiguous (S * B, C, H, W), stream ``s`` of image ``b`` at
        index ``s * B + b``.
    """
    _check_args(input, weight, bias, kernel_sizes, group_channels)
    if not has_compiled_kernel(input):
        return group_mix_dwconv_reference(input, weight, bias, kernel_sizes,
                                          group_channels, hardswish)
    return torch.ops.mmscalable.group_mix_dwconv(input, weight, bias,
                                                 list(kernel_sizes),
                                                 list(group_channels),
                                                 hardswish)
