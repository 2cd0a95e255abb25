# Copyright (c) mmscalable contributors. All rights reserved.
"""The two attentions of ScalableViT (Yang et al., ECCV 2022).

Both take tokens ``x`` of shape (B, N, C) with ``N = H * W`` in raster order
and the map size ``hw_shape = (H, W)``, as the attentions of mmseg's MiT do,
so that any hierarchical backbone can use them.

Each has two implementations of the same function, chosen by ``impl``:
``'reference'`` computes what the official code computes the way it computes
it, an explicit ``softmax(Q K^T) V`` with the weights in memory and windows
cut with reshapes; ``'fast'`` (the default) attends on GPUs with
``F.scaled_dot_product_attention`` (flash / memory-efficient kernels, with a
key mask for padded windows) and cuts windows with the extension's kernels.
On the CPU, where SDPA measured slower on these shapes, it attends
explicitly (``dispatch.select_backend``: ``'explicit'``, not ``'sdpa'``),
with fewer copies and
calls than the reference: IWSA cuts the qkv map into per-head windows with
one copy and attends with batched matmuls, SSA projects the reduced context
with a matmul on the tokens instead of a 1x1 convolution. The benchmark
times one against the other; the tests check that they agree.
"""
from typing import Dict, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import build_activation_layer, build_norm_layer
from mmengine.model import BaseModule
from torch import Tensor

from mmscalable.ops import (window_partition, window_partition_reference,
                            window_reverse, window_reverse_reference)
from mmscalable.registry import MODELS
from mmscalable.torch_compat import is_compiling
from .attention_impl import attend, check_impl
from .conv_position_encoding import map_to_tokens, tokens_to_map
from .dispatch import select_backend


@MODELS.register_module()
class ScalableSelfAttention(BaseModule):
    """Scalable Self-Attention (SSA).

    Keys and values come from a context that is reduced spatially by the
    factor ``spatial_ratio`` (r_n, a depthwise conv with kernel = stride = r_n)
    and projected to ``C' = C * channel_ratio`` channels (r_c, a 1x1 conv),
    followed by LayerNorm and GELU. Queries and keys have ``C'`` channels,
    values ``C``; the scale is ``(head_dim * r_c) ** -0.5``. With
    ``spatial_ratio == 1`` it is plain multi-head attention with separate
    ``q`` and ``kv`` projections, as in the official code.

    Maps whose sides are not multiples of ``r_n`` are padded with zeros on the
    bottom and right before the reduction, so that every token contributes to
    the context; sizes that are multiples are computed exactly as officially.
    The border keys are not masked: each is a whole ``r_n x r_n`` window,
    and masking it would drop the real tokens the padding keeps.

    Args:
        embed_dims (int): Number of input (and output) channels C.
        num_heads (int): Number of attention heads.
        spatial_ratio (int): r_n, the spatial reduction of keys and values.
            Defaults to 1.
        channel_ratio (float): r_c, the scale of the query/key channels.
            Defaults to 1.
        qkv_bias (bool): Whether the q, k, v projections have a bias.
            Defaults to True.
        shared_kv (bool): Use the paper's original form, where keys and
            values share one ``Linear(C', 2C')`` and the output projection
            maps ``C'`` to ``C``. The released checkpoints use separate
            ``k: Linear(C', C')`` and ``v: Linear(C', C)`` (False).
            Defaults to False.
        attn_drop_rate (float): Dropout on the attention weights.
            Defaults to 0.
        proj_drop_rate (float): Dropout after the output projection.
            Defaults to 0.
        norm_cfg (dict): Norm of the reduced context.
            Defaults to ``dict(type='LN', eps=1e-5)`` (PyTorch's default, as
            in the official code).
        act_cfg (dict): Activation of the reduced context.
            Defaults to ``dict(type='GELU')``.
        impl (str): ``'fast'`` (``F.scaled_dot_product_attention`` on
            GPUs) or ``'reference'`` (explicit softmax, as the official
            code).
            Defaults to ``'fast'``.
        init_cfg (dict, optional): Initialization config. Defaults to None.
    """

    def __init__(self,
                 embed_dims: int,
                 num_heads: int,
                 spatial_ratio: int = 1,
                 channel_ratio: float = 1.,
                 qkv_bias: bool = True,
                 shared_kv: bool = False,
                 attn_drop_rate: float = 0.,
                 proj_drop_rate: float = 0.,
                 norm_cfg: dict = dict(type='LN', eps=1e-5),
                 act_cfg: dict = dict(type='GELU'),
                 impl: str = 'fast',
                 init_cfg: Optional[dict] = None):
        super().__init__(init_cfg=init_cfg)
        self.impl = check_impl(impl)
        if embed_dims % num_heads != 0:
            raise ValueError(f'embed_dims ({embed_dims}) must be divisible '
                             f'by num_heads ({num_heads})')
        if spatial_ratio < 1 or int(spatial_ratio) != spatial_ratio:
            raise ValueError('spatial_ratio must be a positive integer, got '
                             f'{spatial_ratio}')
        self.embed_dims = embed_dims
        self.num_heads = num_heads
        self.spatial_ratio = int(spatial_ratio)
        self.channel_ratio = channel_ratio
        self.shared_kv = shared_kv
        # The official scale uses head_dim * r_c even where int() rounding
        # makes C' / num_heads differ from it.
        self.scale = (embed_dims // num_heads * channel_ratio)**-0.5

        if self.spatial_ratio > 1:
            self.scaled_dims = int(embed_dims * channel_ratio)
            if self.scaled_dims % num_heads != 0:
                raise ValueError(
                    f'embed_dims * channel_ratio ({self.scaled_dims}) must '
                    f'be divisible by num_heads ({num_heads})')
            self.q = nn.Linear(embed_dims, self.scaled_dims, bias=qkv_bias)
            self.spatial_reduction = nn.Conv2d(
                embed_dims,
                embed_dims,
                kernel_size=self.spatial_ratio,
                stride=self.spatial_ratio,
                groups=embed_dims)
            self.channel_projection = nn.Conv2d(
                embed_dims, self.scaled_dims, kernel_size=1)
            self.norm = build_norm_layer(norm_cfg, self.scaled_dims)[1]
            self.act = build_activation_layer(act_cfg)
            if shared_kv:
                self.kv = nn.Linear(
                    self.scaled_dims, 2 * self.scaled_dims, bias=qkv_bias)
                value_dims = self.scaled_dims
            else:
                self.k = nn.Linear(
                    self.scaled_dims, self.scaled_dims, bias=qkv_bias)
                self.v = nn.Linear(
                    self.scaled_dims, embed_dims, bias=qkv_bias)
                value_dims = embed_dims
        else:
            self.scaled_dims = embed_dims
            self.q = nn.Linear(embed_dims, embed_dims, bias=qkv_bias)
            self.kv = nn.Linear(embed_dims, 2 * embed_dims, bias=qkv_bias)
            value_dims = embed_dims
        self.value_dims = value_dims
        # Keys and values from one projection ``kv`` (else ``k`` and ``v``).
        self.joint_kv = shared_kv or self.spatial_ratio == 1
        self.proj = nn.Linear(value_dims, embed_dims)
        self.attn_drop = nn.Dropout(attn_drop_rate)
        self.proj_drop = nn.Dropout(proj_drop_rate)

    def reduce_context(self,
                       x: Tensor,
                       hw_shape: Sequence[int],
                       backend: Optional[str] = None) -> Tensor:
        """Reduce (B, N, C) tokens to the (B, N', C') key/value context
        (with the call's ``backend``, selected here if not given)."""
        if backend is None:
            backend = select_backend(self, x)
        context = tokens_to_map(x, hw_shape)
        ratio = self.spatial_ratio
        pad_h = -hw_shape[0] % ratio
        pad_w = -hw_shape[1] % ratio
        if pad_h or pad_w:
            context = F.pad(context, (0, pad_w, 0, pad_h))
        context = self.spatial_reduction(context)
        if backend == 'explicit':
            # The 1x1 projection as the matmul it is, on the tokens: the
            # CPU takes a slower convolution kernel for it.
            projection = self.channel_projection
            context = F.linear(
                map_to_tokens(context), projection.weight.flatten(1),
                projection.bias)
        else:
            context = map_to_tokens(self.channel_projection(context))
        return self.act(self.norm(context))

    def _split_heads(self, x: Tensor) -> Tensor:
        """(B, N, heads * d) to (B, heads, N, d)."""
        return x.reshape(x.shape[0], x.shape[1], self.num_heads,
                         -1).transpose(1, 2)

    def forward(self, x: Tensor, hw_shape: Sequence[int]) -> Tensor:
        """Forward.

        Args:
            x (Tensor): Tokens of shape (B, H * W, C).
            hw_shape (Sequence[int]): The map size (H, W).

        Returns:
            Tensor: Tokens of shape (B, H * W, C).
        """
        B, N, _ = x.shape
        backend = select_backend(self, x)
        query = self._split_heads(self.q(x))
        context = (
            self.reduce_context(x, hw_shape, backend)
            if self.spatial_ratio > 1 else x)
        if self.joint_kv:
            key, value = self.kv(context).chunk(2, dim=-1)
        else:
            key, value = self.k(context), self.v(context)
        key, value = self._split_heads(key), self._split_heads(value)
        out = attend(query, key, value, self.scale, self.attn_drop, backend)
        out = out.transpose(1, 2).reshape(B, N, self.value_dims)
        return self.proj_drop(self.proj(out))


@MODELS.register_module()
class InteractiveWindowAttention(BaseModule):
    """Interactive Window-based Self-Attention (IWSA).

    Softmax attention inside non-overlapping ``window_size`` windows (no
    relative position bias, no shift), plus the local interactive module: a
    depthwise 3x3 conv over the whole value map, added to the attention output
    before the output projection, which lets neighbouring windows exchange
    information.

    Maps whose sides are not multiples of the window are padded on the
    bottom and right after the qkv projection; padded keys are masked, so a
    token attends exactly to the real tokens of its window.

    Args:
        embed_dims (int): Number of input (and output) channels.
        num_heads (int): Number of attention heads.
        window_size (int): Side of the square windows. Defaults to 7.
        qkv_bias (bool): Whether the qkv projection has a bias.
            Defaults to True.
        attn_drop_rate (float): Dropout on the attention weights.
            Defaults to 0.
        proj_drop_rate (float): Dropout after the output projection.
            Defaults to 0.
        impl (str): ``'fast'`` (on GPUs ``F.scaled_dot_product_attention``
            over all windows, cut with the extension's window partition; on
            the CPU explicit softmax over per-head windows cut with one copy)
            or ``'reference'`` (explicit softmax, windows cut with reshapes,
            as the official code). Defaults to ``'fast'``.
        init_cfg (dict, optional): Initialization config. Defaults to None.
    """

    # Map sizes whose padding masks are kept (a test set of varied image
    # sizes would otherwise grow the cache without bound).
    MAX_CACHED_MASKS = 16

    def __init__(self,
                 embed_dims: int,
                 num_heads: int,
                 window_size: int = 7,
                 qkv_bias: bool = True,
                 attn_drop_rate: float = 0.,
                 proj_drop_rate: float = 0.,
                 impl: str = 'fast',
                 init_cfg: Optional[dict] = None):
        super().__init__(init_cfg=init_cfg)
        self.impl = check_impl(impl)
        if embed_dims % num_heads != 0:
            raise ValueError(f'embed_dims ({embed_dims}) must be divisible '
                             f'by num_heads ({num_heads})')
        if window_size < 2:
            raise ValueError(f'window_size must be >= 2, got {window_size}')
        self.embed_dims = embed_dims
        self.num_heads = num_heads
        self.window_size = window_size
        self.scale = (embed_dims // num_heads)**-0.5
        self.qkv = nn.Linear(embed_dims, 3 * embed_dims, bias=qkv_bias)
        self.local_interaction = nn.Conv2d(
            embed_dims, embed_dims, 3, padding=1, groups=embed_dims)
        self.proj = nn.Linear(embed_dims, embed_dims)
        self.attn_drop = nn.Dropout(attn_drop_rate)
        self.proj_drop = nn.Dropout(proj_drop_rate)
        # Padding masks by (H, W, device): they depend on nothing else.
        self._padding_masks: Dict[Tuple[int, int, torch.device], Tensor] = {}

    def padding_mask(self, hw_shape: Sequence[int],
                     device: torch.device) -> Optional[Tensor]:
        """Which keys of each window are real tokens.

        The mask is built once per map size and device, and kept.

        Returns:
            Tensor | None: None when no window is padded, else a bool tensor
            of shape (num_windows, 1, 1, window_size ** 2), True where a key
            may be attended.
        """
        ws = self.window_size
        H, W = hw_shape
        if H % ws == 0 and W % ws == 0:
            return None
        if is_compiling():
            # The compiler folds the constant mask; a cache would be a side
            # effect it has to guard on.
            return self._build_padding_mask(H, W, device)
        key = (H, W, device)
        mask = self._padding_masks.get(key)
        if mask is None:
            if len(self._padding_masks) >= self.MAX_CACHED_MASKS:
                self._padding_masks.pop(next(iter(self._padding_masks)))
            # A normal tensor even when first built under inference_mode, so
            # that training calls may use it too.
            with torch.inference_mode(False):
                mask = self._build_padding_mask(H, W, device)
            self._padding_masks[key] = mask
        return mask

    def _build_padding_mask(self, H: int, W: int,
                            device: torch.device) -> Tensor:
        ws = self.window_size
        valid = torch.ones(1, H, W, 1, device=device)
        valid = self._partition(valid)
        return (valid > 0.5).view(valid.shape[0], 1, 1, ws * ws)

    def forward(self, x: Tensor, hw_shape: Sequence[int]) -> Tensor:
        """Forward.

        Args:
            x (Tensor): Tokens of shape (B, H * W, C).
            hw_shape (Sequence[int]): The map size (H, W).

        Returns:
            Tensor: Tokens of shape (B, H * W, C).
        """
        backend = select_backend(self, x)
        if backend == 'explicit':
            return self._forward_head_windows(x, hw_shape)
        C = x.shape[2]
        qkv = self.qkv(x)
        value_map = tokens_to_map(qkv[..., 2 * C:], hw_shape)
        local = map_to_tokens(self.local_interaction(value_map))
        out = self.attend_windows(qkv, hw_shape, backend)
        return self.proj_drop(self.proj(out + local))

    def attend_windows(self,
                       qkv: Tensor,
                       hw_shape: Sequence[int],
                       backend: Optional[str] = None) -> Tensor:
        """The window attention of the qkv tokens: windows cut (padded and
        masked), attended, and put back in raster order.

        This is the whole of what a window-attention kernel reading qkv in
        raster order would replace (the benchmark of the ops times it).

        Args:
            qkv (Tensor): The qkv projection, (B, H * W, 3 * C).
            hw_shape (Sequence[int]): The map size (H, W).
            backend (str, optional): The call's backend (``'sdpa'`` attends
                with SDPA, another explicitly); selected here if None.

        Returns:
            Tensor: The attention output, (B, H * W, C).
        """
        if backend is None:
            backend = select_backend(self, qkv)
        B, N, C3 = qkv.shape
        C = C3 // 3
        H, W = hw_shape
        ws = self.window_size
        windows = self._partition(qkv.view(B, H, W, C3))
        num_windows = windows.shape[0]
        query, key, value = windows.view(num_windows, ws * ws, 3,
                                         self.num_heads, -1).permute(
                                             2, 0, 3, 1, 4).unbind(0)
        mask = self.padding_mask(hw_shape, qkv.device)
        if mask is not None:
            mask = mask.repeat(B, 1, 1, 1)
        out = attend(query, key, value, self.scale, self.attn_drop, backend,
                     mask)
        out = out.transpose(1, 2).reshape(num_windows, ws * ws, C)
        if self.impl == 'reference':
            out = window_reverse_reference(out, ws, H, W)
        else:
            out = window_reverse(out, ws, H, W)
        return out.view(B, N, C)

    def _forward_head_windows(self, x: Tensor,
                              hw_shape: Sequence[int]) -> Tensor:
        """The fast path where the weights are materialised (the CPU).

        One copy cuts the qkv map into the windows of every head, laid out
        as the contiguous (windows * heads, ws * ws, head_dim) matrices that
        ``torch.bmm`` takes, and one copy puts the outputs back in raster
        order. After the other paths' window partition, the matmuls copy
        the strided q, k and v of each head again, and the output is copied
        once more before the window reverse; on the small maps of the later
        stages the per-call checks of the partition and reverse ops also
        cost more than cutting the windows.
        """
        B, N, C = x.shape
        H, W = hw_shape
        ws = self.window_size
        heads = self.num_heads
        head_dims = C // heads
        qkv = self.qkv(x)
        value_map = tokens_to_map(qkv[..., 2 * C:], hw_shape)
        local = map_to_tokens(self.local_interaction(value_map))

        pad_h = -H % ws
        pad_w = -W % ws
        qkv = qkv.view(B, H, W, 3 * C)
        if pad_h or pad_w:
            qkv = F.pad(qkv, (0, 0, 0, pad_w, 0, pad_h))
        rows = (H + pad_h) // ws
        cols = (W + pad_w) // ws
        # (B, rows, ws, cols, ws, 3, heads, d) -> (3, B, rows, cols, heads,
        # ws, ws, d): q, k and v of each window and head, contiguous.
        qkv = qkv.view(B, rows, ws, cols, ws, 3, heads, head_dims).permute(
            5, 0, 1, 3, 6, 2, 4, 7).reshape(3, -1, ws * ws, head_dims)
        query, key, value = qkv.unbind(0)
        attn = torch.bmm(query, key.transpose(1, 2)).mul_(self.scale)
        mask = self.padding_mask(hw_shape, x.device)
        if mask is not None:
            # (windows, 1, 1, L) broadcasts over (B, windows, heads, L, L).
            attn.view(B, rows * cols, heads, ws * ws,
                      ws * ws).masked_fill_(~mask, float('-inf'))
        out = torch.bmm(self.attn_drop(attn.softmax(dim=-1)), value)
        out = out.view(B, rows, cols, heads, ws, ws, head_dims).permute(
            0, 1, 4, 2, 5, 3, 6).reshape(B, rows * ws, cols * ws, C)
        # Cropping the padding and adding the local term write the
        # contiguous tokens in one pass.
        out = out[:, :H, :W] + local.view(B, H, W, C)
        return self.proj_drop(self.proj(out.reshape(B, N, C)))

    def _partition(self, x: Tensor) -> Tensor:
        """(B, H, W, C) to padded (B * windows, ws * ws, C) windows."""
        if self.impl == 'reference':
            return window_partition_reference(x, self.window_size)
        return window_partition(x, self.window_size)
