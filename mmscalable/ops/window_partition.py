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
it) do each direction in one pass; without them, or for devices and dtypes
they do not cover, the pure-PyTorch references below are used.
"""
import numbers

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd import Function
from torch.autograd.function import once_differentiable

from .ext_loader import ext_for

# The dtypes the compiled kernels are instantiated for.
_EXT_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


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


def _kernels_for(tensor: Tensor):
    """The compiled ops module if it has a kernel for ``tensor``, else None.

    Under ``torch.compile`` the reference is traced instead: the compiler
    fuses its pad and copies into the neighbouring kernels, where an opaque
    extension call would break the graph (and, with the stages' different
    sizes, make it recompile the blocks with dynamic shapes). Under
    ``torch.jit.trace`` and ONNX export too (see ``ext_for``).
    """
    if torch.compiler.is_compiling():
        return None
    return ext_for(tensor, _EXT_DTYPES)


def _partition(x: Tensor, window_size: int) -> Tensor:
    ext = _kernels_for(x)
    if ext is None:
        return window_partition_reference(x, window_size)
    return ext.window_partition_forward(x, int(window_size))


def _reverse(windows: Tensor, window_size: int, H: int, W: int) -> Tensor:
    ext = _kernels_for(windows)
    if ext is None:
        return window_reverse_reference(windows, window_size, H, W)
    return ext.window_reverse_forward(windows, int(window_size), int(H),
                                      int(W))


class WindowPartitionFunction(Function):
    """Autograd function of :func:`window_partition`.

    The gradient of a partition is the reverse of the windows' gradient:
    positions that were padding receive no gradient and are cropped.
    """

    @staticmethod
    def forward(ctx, x: Tensor, window_size: int) -> Tensor:
        ctx.window_size = window_size
        ctx.map_hw = (x.shape[1], x.shape[2])
        return _partition(x, window_size)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_windows: Tensor):
        H, W = ctx.map_hw
        return _reverse(grad_windows, ctx.window_size, H, W), None


class WindowReverseFunction(Function):
    """Autograd function of :func:`window_reverse`.

    The gradient of a reverse is the partition of the map's gradient: padded
    positions did not reach the output, so their gradient is zero.
    """

    @staticmethod
    def forward(ctx, windows: Tensor, window_size: int, H: int,
                W: int) -> Tensor:
        ctx.window_size = window_size
        return _reverse(windows, window_size, H, W)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_map: Tensor):
        return _partition(grad_map, ctx.window_size), None, None, None


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
    ext = _kernels_for(x)
    if ext is None:
        # Plain PyTorch ops: autograd (double backward included) as usual.
        return window_partition_reference(x, window_size)
    if not (torch.is_grad_enabled() and x.requires_grad):
        # No graph to record: the kernel itself (the autograd Function costs
        # about as much as the copy on small maps).
        return ext.window_partition_forward(x, int(window_size))
    return WindowPartitionFunction.apply(x, window_size)


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
    ext = _kernels_for(windows)
    if ext is None:
        return window_reverse_reference(windows, window_size, H, W)
    if not (torch.is_grad_enabled() and windows.requires_grad):
        return ext.window_reverse_forward(windows, int(window_size), int(H),
                                          int(W))
    return WindowReverseFunction.apply(windows, window_size, H, W)
