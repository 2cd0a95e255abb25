# Copyright (c) mmscalable contributors. All rights reserved.
"""Group-Mix Attention of GroupMixFormer (Ge et al., "Advancing Vision
Transformers with Group-Mix Attention", 2023).

Takes tokens ``x`` of shape (B, N, C) with ``N = H * W`` in raster order and
the map size ``hw_shape = (H, W)``, like the attentions of mmseg's MiT and
mmscalable's ScalableViT.

This module holds the parameters and the official computation
(``impl='reference'``: one conv module per segment and per head group);
``impl='fast'`` computes the same function with the same parameters in
:mod:`~mmscalable.models.layers.fast_group_mix_attention`.
"""
from typing import Dict, List, Optional, Sequence

import torch
import torch.nn as nn
from mmcv.cnn import (DepthwiseSeparableConvModule, build_activation_layer,
                      build_norm_layer)
from mmengine.model import BaseModule, ModuleList
from torch import Tensor

from mmscalable.registry import MODELS
from .attention_impl import check_impl
from .conv_position_encoding import map_to_tokens
from .fast_group_mix_attention import FastGroupMixAttention, check_activation
from .dispatch import select_backend
from .fused_convs import grouped_depthwise


class ConvRelativePositionEncoding(BaseModule):
    """Convolutional relative position encoding ``q * dwconv(v)``.

    Heads are split into groups with their own depthwise kernel size, as in
    CoaT's ConvRelPosEnc. This is the official computation; the fast one
    (:meth:`FastGroupMixAttention.encode_positions`) uses the same convs.

    Args:
        head_dims (int): Channels per head.
        head_splits (dict[int, int]): ``{kernel_size: num_heads}`` in head
            order, e.g. ``{3: 2, 5: 3, 7: 3}``.
        init_cfg (dict, optional): Initialization config. Defaults to None.
    """

    def __init__(self,
                 head_dims: int,
                 head_splits: Dict[int, int],
                 init_cfg: Optional[dict] = None):
        super().__init__(init_cfg=init_cfg)
        self.channel_splits = [
            num_heads * head_dims for num_heads in head_splits.values()
        ]
        self.convs = ModuleList([
            nn.Conv2d(
                channels,
                channels,
                kernel_size,
                padding=kernel_size // 2,
                groups=channels)
            for kernel_size, channels in zip(head_splits,
                                             self.channel_splits)
        ])

    def forward(self, q: Tensor, value_map: Tensor) -> Tensor:
        """Encode.

        Args:
            q (Tensor): Queries of shape (B, heads, N, head_dims).
            value_map (Tensor): Values as a map (B, heads * head_dims, H, W),
                channels ordered by head.

        Returns:
            Tensor: (B, heads, N, head_dims).
        """
        B, num_heads, N, head_dims = q.shape
        encoded = grouped_depthwise(value_map, self.convs, self.channel_splits)
        encoded = encoded.reshape(B, num_heads, head_dims, N)
        return q * encoded.transpose(-2, -1)


def _segment_dims(embed_dims: int, num_heads: int, num_proxies: int,
                  crpe_head_splits: Dict[int, int]) -> int:
    """The channels of one segment of Group-Mix Attention's q, k and v.

    Raises:
        ValueError: If the segments or the heads do not divide the
            channels, or the position encoding's head groups do not cover
            ``num_heads``.
    """
    num_segments = num_proxies + 2
    if embed_dims % num_segments != 0:
        raise ValueError(
            f'embed_dims ({embed_dims}) must be divisible by the number '
            f'of segments ({num_segments}: one token segment, '
            f'{num_proxies} proxy segments, one local segment)')
    segment_dims = embed_dims // num_segments
    attended_dims = embed_dims - segment_dims
    if sum(crpe_head_splits.values()) != num_heads:
        raise ValueError(
            f'crpe_head_splits {crpe_head_splits} covers '
            f'{sum(crpe_head_splits.values())} heads, not num_heads '
            f'({num_heads})')
    if attended_dims % num_heads != 0:
        raise ValueError(
            f'The attended channels ({attended_dims} of embed_dims '
            f'{embed_dims}) must be divisible by num_heads ({num_heads})')
    return segment_dims


@MODELS.register_module()
class GroupMixAttention(BaseModule):
    """Group-Mix Attention (GMA).

    Q, K and V are split into ``len(proxy_kernel_sizes) + 2`` equal channel
    segments. The first segment stays per token (norm + activation), the next
    ones become group proxies through depthwise-separable convs of the given
    kernel sizes (norm + activation), so that the attention mixes
    token-to-token, token-to-group and group-to-group correlations. These
    segments are attended with factorised attention (softmax of K over the
    tokens, ``Q (K^T V)``), plus a convolutional relative position encoding.
    The last segment of Q, K and V together bypasses the attention: a
    separable conv aggregates it to ``C / segments`` channels (LayerNorm,
    activation), concatenated to the attention output before the projection.

    The factorised attention is linear in the number of tokens and has no
    softmax over query-key products, so it is not computed with
    ``F.scaled_dot_product_attention``.

    Args:
        embed_dims (int): Number of input (and output) channels C; must be
            divisible by the number of segments.
        num_heads (int): Attention heads of the attended channels; must
            equal the sum of ``crpe_head_splits``. Defaults to 8.
        proxy_kernel_sizes (Sequence[int]): Kernel sizes of the group-proxy
            aggregators. Defaults to (3, 5, 7).
        crpe_head_splits (dict[int, int]): ``{kernel_size: num_heads}`` of the
            relative position encoding. Defaults to ``{3: 2, 5: 3, 7: 3}``.
        local_kernel_size (int): Kernel of the non-attended branch's
            aggregator. Defaults to 3.
        qkv_bias (bool): Bias of the qkv projection. Defaults to True.
        proj_drop_rate (float): Dropout after the output projection.
            Defaults to 0.
        norm_cfg (dict): Norm of the segment aggregators (the official code
            uses SyncBN). Defaults to ``dict(type='BN')``.
        local_norm_cfg (dict): Norm of the non-attended branch.
            Defaults to ``dict(type='LN', eps=1e-5)``.
        act_cfg (dict): Activation of the aggregators; parameter-free in the
            fast path, which applies one to all segments.
            Defaults to ``dict(type='HSwish')``.
        impl (str): ``'fast'`` (fused segment convs and norms,
            :class:`FastGroupMixAttention`) or ``'reference'`` (one module
            per segment, as the official code). Defaults to ``'fast'``.
        init_cfg (dict, optional): Initialization config. Defaults to None.
    """

    def __init__(self,
                 embed_dims: int,
                 num_heads: int = 8,
                 proxy_kernel_sizes: Sequence[int] = (3, 5, 7),
                 crpe_head_splits: Dict[int, int] = {3: 2, 5: 3, 7: 3},
                 local_kernel_size: int = 3,
                 qkv_bias: bool = True,
                 proj_drop_rate: float = 0.,
                 norm_cfg: dict = dict(type='BN'),
                 local_norm_cfg: dict = dict(type='LN', eps=1e-5),
                 act_cfg: dict = dict(type='HSwish'),
                 impl: str = 'fast',
                 init_cfg: Optional[dict] = None):
        super().__init__(init_cfg=init_cfg)
        self.impl = check_impl(impl)
        self.embed_dims = embed_dims
        self.num_heads = num_heads
        self.segment_dims = _segment_dims(embed_dims, num_heads,
                                          len(proxy_kernel_sizes),
                                          crpe_head_splits)
        self.head_dims = (embed_dims - self.segment_dims) // num_heads
        # The official scale counts all C channels per head, not only the
        # attended ones: (C / num_heads) ** -0.5.
        self.scale = (embed_dims // num_heads)**-0.5

        self.qkv = nn.Linear(embed_dims, 3 * embed_dims, bias=qkv_bias)
        self._init_attended_segments(proxy_kernel_sizes, norm_cfg, act_cfg)
        self._init_local_branch(local_kernel_size, local_norm_cfg, act_cfg)
        self.crpe = ConvRelativePositionEncoding(self.head_dims,
                                                 crpe_head_splits)
        self.proj = nn.Linear(embed_dims, embed_dims)
        self.proj_drop = nn.Dropout(proj_drop_rate)
        if self.impl == 'fast':
            check_activation(self.token_act, act_cfg)
        # Holds no parameters: the fast path computes with this module's.
        self.fast_path = FastGroupMixAttention()

    def _init_attended_segments(self, proxy_kernel_sizes: Sequence[int],
                                norm_cfg: dict, act_cfg: dict) -> None:
        """Segment 0: the tokens themselves (norm, activation). Segments
        1..: group proxies (separable convs, norm, activation)."""
        seg = self.segment_dims
        self.token_norm = build_norm_layer(norm_cfg, seg)[1]
        self.token_act = build_activation_layer(act_cfg)
        self.proxy_aggregators = ModuleList([
            DepthwiseSeparableConvModule(
                seg,
                seg,
                kernel_size,
                padding=kernel_size // 2,
                bias=False,
                norm_cfg=norm_cfg,
                act_cfg=act_cfg,
                dw_norm_cfg=None,
                dw_act_cfg=None) for kernel_size in proxy_kernel_sizes
        ])

    def _init_local_branch(self, kernel_size: int, norm_cfg: dict,
                           act_cfg: dict) -> None:
        """The last segment of q, k and v, concatenated, is not attended: a
        separable conv to one segment's channels, norm, activation."""
        seg = self.segment_dims
        self.local_aggregator = DepthwiseSeparableConvModule(
            3 * seg,
            seg,
            kernel_size,
            padding=kernel_size // 2,
            bias=False,
            norm_cfg=None,
            act_cfg=None,
            dw_norm_cfg=None,
            dw_act_cfg=None)
        self.local_norm = build_norm_layer(norm_cfg, seg)[1]
        self.local_act = build_activation_layer(act_cfg)

    @property
    def segment_norms(self) -> List[nn.Module]:
        """The norms of the attended segments, token segment first."""
        return [self.token_norm] + [
            aggregate.pointwise_conv.norm
            for aggregate in self.proxy_aggregators
        ]

    def forward(self, x: Tensor, hw_shape: Sequence[int]) -> Tensor:
        """Attend (B, N, C) tokens of an (H, W) map; same shape out."""
        backend = select_backend(self, x, hw_shape=hw_shape)
        if backend == 'reference':
            return self._reference_forward(x, hw_shape)
        return self.fast_path(
            self, x, hw_shape, use_depthwise_op=backend == 'ext')

    def proxy_depthwise_convs(self) -> List[nn.Conv2d]:
        """The depthwise convs of the group proxies' aggregators."""
        return [
            aggregate.depthwise_conv.conv
            for aggregate in self.proxy_aggregators
        ]

    def depthwise_convs(self) -> List[nn.Conv2d]:
        """The depthwise convs of the group proxies and of the position
        encoding, which the fast path runs as one compiled op each where
        it can (backend ``'ext'``)."""
        return self.proxy_depthwise_convs() + list(self.crpe.convs)

    def _reference_segments(self, segments: Sequence[Tensor]) -> Tensor:
        """One module per segment, as the official code."""
        attended = [self.token_act(self.token_norm(segments[0]))]
        attended += [
            aggregate(segment) for aggregate, segment in zip(
                self.proxy_aggregators, segments[1:-1])
        ]
        return torch.cat(attended, dim=1)

    def _reference_forward(self, x: Tensor, hw_shape: Sequence[int]) -> Tensor:
        """The official computation."""
        B, N, C = x.shape
        qkv_tokens = self.qkv(x)
        # q, k and v stacked on the batch axis (3B, C, H, W): each segment
        # norm normalises the three together, as the official BatchNorms do.
        qkv = qkv_tokens.reshape(B, N, 3, C).permute(2, 0, 3, 1)
        qkv = qkv.reshape(3 * B, C, *hw_shape)
        segments = qkv.split(self.segment_dims, dim=1)
        attended = self._reference_segments(segments)
        # attended: (3B, C_att, H, W)
        value_map = attended[2 * B:]
        q, k, v = attended.reshape(3, B, self.num_heads, self.head_dims,
                                   N).transpose(-2, -1)

        # (B, 3 * C_seg, H, W) with q's, k's and v's channels in that order.
        local = segments[-1].reshape(3, B, self.segment_dims, *hw_shape)
        local = local.transpose(0, 1).reshape(B, 3 * self.segment_dims,
                                              *hw_shape)
        local = map_to_tokens(self.local_aggregator(local))
        local = self.local_act(self.local_norm(local))

        # Factorised attention: (softmax_N(K)^T V) is (head_dims, head_dims).
        context = k.softmax(dim=2).transpose(-2, -1) @ v
        out = self.scale * (q @ context) + self.crpe(q, value_map)
        out = out.transpose(1, 2).reshape(B, N, -1)
        out = self.proj(torch.cat([out, local], dim=-1))
        return self.proj_drop(out)
