# Copyright (c) mmscalable contributors. All rights reserved.
"""Window partition / reverse with zero padding, for window attention.

A channels-last map (B, H, W, C) is padded on the bottom and right with zeros
to (B, Hp, Wp, C), Hp and Wp the next multiples of the window size ``ws``,
and cut into ``B * nH * nW`` windows of ``ws * ws`` tokens (nH = Hp / ws,
nW = Wp / ws). Windows are ordered row-major over (batch, window row, window
column) and the tokens of a window row-major, as in Swin's
``window_partition``. :func:`window_reverse` is the inverse and crops the
padding.

The compiled kernels of ``mmscalable._ext`` (CPU, and CUDA when built with
it) do each direction in one pass, as the ops
``torch.ops.mmscalable.window_partition`` and ``window_reverse``, each the
other's backward (so double backward works too). Without them, for devices
and dtypes they do not cover, under ``MMSCALABLE_DISABLE_EXT=1``,
``torch.jit.trace`` and ONNX export, the pure-PyTorch references below are
used (see :func:`~mmscalable.ops.has_compiled_kernel`). Under
``torch.compile`` too, unlike the other ops: the compiler fuses the
references' pad and copies into the neighbouring kernels, which it cannot do
with an op.
"""
import numbers

import torch
import torch.nn.functional as F
from torch import Tensor

from .ext_loader import has_compiled_kernel, register_op

PARTITION_OP = 'mmscalable::window_partition'
REVERSE_OP = 'mmscalable::window_reverse'


def _num_windows_along(length: int, window_size: int) -> int:
    return -(-length // window_size)


def _check_window_size(window_size: int) -> None:
    is_integer = isinstance(window_size, numbers.Integral)
    if not is_integer or isinstance(window_size, bool):
        raise TypeError('window_size must be an int, got '
                        f'{type(window_size).__name__}')
    if window_size < 1:
        raise ValueError(f'window_size must be >= 1, got {window_size}')


def _check_partition_args(x: Tensor, window_size: int) -> None:
    if x.dim() != 4:
        raise ValueError('window_partition expects a 4-D (B, H, W, C) input, '
                         f'got a tensor of rank {x.dim()} with shape '
                         f'{tuple(x.shape)}')
    _check_window_size(window_size)


def _check_reverse_args(windows: Tensor, window_size: int, H: int,
                        W: int) -> None:
    if windows.dim() != 3:
        raise ValueError('window_reverse expects 3-D windows (B * nH * nW, '
                         'window_size * window_size, C), got a tensor of rank '
                         f'{windows.dim()} with shape {tuple(windows.shape)}')
    _check_window_size(window_size)
    if H < 1 or W < 1:
        raise ValueError(
            f'window_reverse needs H >= 1 and W >= 1, got H={H}, W={W}')
    if windows.shape[1] != window_size * window_size:
        raise ValueError('window_reverse: windows.shape[1] must be '
                         f'window_size ** 2 = {window_size * window_size}, '
                         f'got {windows.shape[1]}')
    windows_per_image = (
        _num_windows_along(H, window_size) *
        _num_windows_along(W, window_size))
    if windows.shape[0] % windows_per_image != 0:
        raise ValueError(
            f'window_reverse: windows.shape[0] = {windows.shape[0]} is not a '
            f'multiple of the {windows_per_image} windows that cover a '
            f'{H}x{W} map with window_size {window_size}')


def window_partition_reference(x: Tensor, window_size: int) -> Tensor:
    """Pure-PyTorch window partition (F.pad + view/permute).

    Args:
        x (Tensor): Map of shape (B, H, W, C).
        window_size (int): Side ``ws`` of the square windows.

    Returns:
        Tensor: Contiguous windows of shape (B * nH * nW, ws * ws, C), with
        zeros where the windows overhang the map.
    """
    _check_partition_args(x, window_size)
    B, H, W, C = x.shape
    ws = window_size
    pad_h = (-H) % ws
    pad_w = (-W) % ws
    if pad_h or pad_w:
        # F.pad pads the last dims first: (C_left, C_right, W_left, W_right,
        # H_top, H_bottom).
        x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
    num_win_h = (H + pad_h) // ws
    num_win_w = (W + pad_w) // ws
    x = x.reshape(B, num_win_h, ws, num_win_w, ws, C)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, ws * ws, C).contiguous()


def window_reverse_reference(windows: Tensor, window_size: int, H: int,
                             W: int) -> Tensor:
    """Pure-PyTorch inverse of :func:`window_partition_reference`.

    Args:
        windows (Tensor): Windows of shape (B * nH * nW, ws * ws, C).
        window_size (int): Side ``ws`` of the square windows.
        H (int): Height of the map before padding.
        W (int): Width of the map before padding.

    Returns:
        Tensor: Contiguous map of shape (B, H, W, C).
    """
    _check_reverse_args(windows, window_size, H, W)
    ws = window_size
    num_win_h = _num_windows_along(H, ws)
    num_win_w = _num_windows_along(W, ws)
    C = windows.shape[2]
    B = windows.shape[0] // (num_win_h * num_win_w)
    x = windows.reshape(B, num_win_h, num_win_w, ws, ws, C)
    x = x.permute(0, 1, 3, 2, 4, 5)
    x = x.reshape(B, num_win_h * ws, num_win_w * ws, C)
    return x[:, :H, :W, :].contiguous()


def _partition_fake(x: Tensor, window_size: int) -> Tensor:
    B, H, W, C = x.shape
    num_windows = (
        B * _num_windows_along(H, window_size) *
        _num_windows_along(W, window_size))
    return x.new_empty((num_windows, window_size * window_size, C))


def _reverse_fake(windows: Tensor, window_size: int, H: int, W: int) -> Tensor:
    B = windows.shape[0] // (
        _num_windows_along(H, window_size) *
        _num_windows_along(W, window_size))
    return windows.new_empty((B, H, W, windows.shape[2]))


def _partition_setup_context(ctx, inputs, output) -> None:
    x, window_size = inputs
    ctx.window_size = window_size
    ctx.map_hw = (x.shape[1], x.shape[2])


def _partition_backward(ctx, grad_windows: Tensor):
    # The reverse of the windows' gradient: positions that were padding
    # receive no gradient and are cropped. It is an op with autograd itself,
    # hence double backward.
    H, W = ctx.map_hw
    return torch.ops.mmscalable.window_reverse(grad_windows, ctx.window_size,
                                               H, W), None


def _reverse_setup_context(ctx, inputs, output) -> None:
    ctx.window_size = inputs[1]


def _reverse_backward(ctx, grad_map: Tensor):
    # The partition of the map's gradient: padded positions did not reach
    # the output, so their gradient is zero.
    grad_windows = torch.ops.mmscalable.window_partition(
        grad_map, ctx.window_size)
    return grad_windows, None, None, None


register_op(
    PARTITION_OP,
    _partition_fake,
    backward=_partition_backward,
    setup_context=_partition_setup_context)
register_op(
    REVERSE_OP,
    _reverse_fake,
    backward=_reverse_backward,
    setup_context=_reverse_setup_context)


def _call_op(op, tensor: Tensor, *args) -> Tensor:
    """``op(tensor, *args)``, below autograd when there is no graph to
    record: the op's Python autograd kernel costs more than the copy itself
    on small maps (one CPU thread, a 14 x 14 x 96 map: 28 us against 11 us).
    torch.library's autograd kernel takes the same route when no input
    needs a gradient, after that cost."""
    if torch.is_grad_enabled() and tensor.requires_grad:
        return op(tensor, *args)
    with torch._C._AutoDispatchBelowAutograd():
        return op(tensor, *args)


def window_partition(x: Tensor, window_size: int) -> Tensor:
    """Cut a channels-last map into zero-padded square windows.

    Args:
        x (Tensor): Map of shape (B, H, W, C); any strides.
        window_size (int): Side ``ws`` of the windows, >= 1.

    Returns:
        Tensor: Contiguous windows of shape (B * nH * nW, ws * ws, C) with
        ``nH = ceil(H / ws)`` and ``nW = ceil(W / ws)``, ordered row-major over
        (batch, window row, window column), tokens row-major inside a window.
        Positions beyond the bottom/right border are zero.
    """
    _check_partition_args(x, window_size)
    if not has_compiled_kernel(x, keep_under_compile=False):
        return window_partition_reference(x, window_size)
    return _call_op(torch.ops.mmscalable.window_partition, x, int(window_size))


def window_reverse(windows: Tensor, window_size: int, H: int,
                   W: int) -> Tensor:
    """Merge windows from :func:`window_partition` back into a map.

    Args:
        windows (Tensor): Windows of shape (B * nH * nW, ws * ws, C).
        window_size (int): Side ``ws`` of the windows, >= 1.
        H (int): Height of the map before padding.
        W (int): Width of the map before padding.

    Returns:
        Tensor: Contiguous map of shape (B, H, W, C); the padded positions of
        the windows are dropped.
    """
    _check_reverse_args(windows, window_size, H, W)
    if not has_compiled_kernel(windows, keep_under_compile=False):
        return window_reverse_reference(windows, window_size, H, W)
    return _call_op(torch.ops.mmscalable.window_reverse, windows,
                    int(window_size), int(H), int(W))
