# Copyright (c) mmscalable contributors. All rights reserved.
"""Group-Mix Attention of GroupMixFormer (Ge et al., "Advancing Vision
Transformers with Group-Mix Attention", 2023).

Takes tokens ``x`` of shape (B, N, C) with ``N = H * W`` in raster order and
the map size ``hw_shape = (H, W)``, like the attentions of mmseg's MiT and
mmscalable's ScalableViT.

``impl='reference'`` runs one conv module per segment and per head group, as
the official code does. ``impl='fast'`` computes the same function without
transposing (B, N, C) tokens: the attended segments of q, k and v become one
(3B, C_att, H, W) map (the depthwise kernels of the segments in one
:func:`mmscalable.ops.group_mix_dwconv` reading the qkv tokens, the token
segment as a 1x1 kernel of ones, on maps of at least 64x64 pixels on the
CPU, else one conv per kernel size; the pointwise kernels as one batched
product; the segment norms as one BatchNorm, frozen statistics folded into
the pointwise kernels and kept between inference calls), attended per head
along its contiguous pixel axis; the local branch runs channels-last on
the qkv tokens, and the output projection takes the attended map
transposed and the local tokens through its split weight instead of a
concatenation. The position encoding's head groups run the same way, with
their biases. The op was measured faster than the per-group convs on
large maps on the CPU; its CUDA kernel is used where it was built but its
speed on GPUs has not been measured yet.
"""
from typing import Dict, List, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import (DepthwiseSeparableConvModule, build_activation_layer,
                      build_norm_layer)
from mmengine.model import BaseModule, ModuleList
from torch import Tensor

from mmscalable.registry import MODELS
from mmscalable.ops import group_mix_dwconv
from mmscalable.torch_compat import is_autocast_enabled
from .attention_impl import check_impl
from .conv_position_encoding import map_to_tokens
from .fused_convs import (InferenceCache, depthwise_op_applies,
                          depthwise_op_pays, fold_batch_norm,
                          grouped_depthwise, is_frozen_batch_norm,
                          packed_depthwise)


class ConvRelativePositionEncoding(BaseModule):
    """Convolutional relative position encoding ``q * dwconv(v)``.

    Heads are split into groups with their own depthwise kernel size, as in
    CoaT's ConvRelPosEnc.

    Args:
        head_dims (int): Channels per head.
        head_splits (dict[int, int]): ``{kernel_size: num_heads}`` in head
            order, e.g. ``{3: 2, 5: 3, 7: 3}``.
        impl (str): ``'fast'`` runs the head groups' convs as one
            :func:`mmscalable.ops.group_mix_dwconv` where its compiled kernel
            exists; ``'reference'`` runs one conv per head group.
            Defaults to ``'fast'``.
        init_cfg (dict, optional): Initialization config. Defaults to None.
    """

    def __init__(self,
                 head_dims: int,
                 head_splits: Dict[int, int],
                 impl: str = 'fast',
                 init_cfg: Optional[dict] = None):
        super().__init__(init_cfg=init_cfg)
        self.impl = check_impl(impl)
        self._cache = InferenceCache()
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
        if self.impl == 'fast':
            encoded = self.encode(value_map)
        else:
            encoded = grouped_depthwise(value_map, self.convs,
                                        self.channel_splits)
        return q * encoded.reshape(B, num_heads, head_dims, N).transpose(-2, -1)

    def encode(self, value_map: Tensor) -> Tensor:
        """The head groups' convs of ``value_map`` (B, heads * head_dims, H,
        W): one :func:`mmscalable.ops.group_mix_dwconv` where its compiled
        kernel exists, else one conv per group. Returns a contiguous map of
        the same shape."""
        if not (depthwise_op_applies(self.convs, value_map)
                and depthwise_op_pays(value_map, value_map.shape[-2:])):
            return grouped_depthwise(value_map, self.convs,
                                     self.channel_splits)
        weight, bias = self._cache.get(
            [p for conv in self.convs for p in (conv.weight, conv.bias)],
            lambda: packed_depthwise(self.convs))
        # (B, C, H, W) seen as (B, H, W, 1 stream, C).
        # Under autocast the map may be of a lower precision than the
        # weights, which F.conv2d would cast.
        return group_mix_dwconv(
            value_map.permute(0, 2, 3, 1).unsqueeze(3),
            weight.to(value_map.dtype),
            None if bias is None else bias.to(value_map.dtype),
            [conv.kernel_size[0] for conv in self.convs],
            self.channel_splits)


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
        impl (str): ``'fast'`` (fused segment convs and norms) or
            ``'reference'`` (one module per segment, as the official code).
            Defaults to ``'fast'``.
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
        num_segments = len(proxy_kernel_sizes) + 2
        if embed_dims % num_segments != 0:
            raise ValueError(
                f'embed_dims ({embed_dims}) must be divisible by the number '
                f'of segments ({num_segments}: one token segment, '
                f'{len(proxy_kernel_sizes)} proxy segments, one local '
                'segment)')
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
        self.embed_dims = embed_dims
        self.num_heads = num_heads
        self.segment_dims = segment_dims
        self.head_dims = attended_dims // num_heads
        # The official scale counts all C channels per head, not only the
        # attended ones: (C / num_heads) ** -0.5.
        self.scale = (embed_dims // num_heads)**-0.5

        self.qkv = nn.Linear(embed_dims, 3 * embed_dims, bias=qkv_bias)
        # Segment 0: the tokens themselves. Segments 1..: group proxies.
        self.token_norm = build_norm_layer(norm_cfg, segment_dims)[1]
        self.token_act = build_activation_layer(act_cfg)
        self.proxy_aggregators = ModuleList([
            DepthwiseSeparableConvModule(
                segment_dims,
                segment_dims,
                kernel_size,
                padding=kernel_size // 2,
                bias=False,
                norm_cfg=norm_cfg,
                act_cfg=act_cfg,
                dw_norm_cfg=None,
                dw_act_cfg=None) for kernel_size in proxy_kernel_sizes
        ])
        # The last segment of q, k and v, concatenated, is not attended.
        self.local_aggregator = DepthwiseSeparableConvModule(
            3 * segment_dims,
            segment_dims,
            local_kernel_size,
            padding=local_kernel_size // 2,
            bias=False,
            norm_cfg=None,
            act_cfg=None,
            dw_norm_cfg=None,
            dw_act_cfg=None)
        self.local_norm = build_norm_layer(local_norm_cfg, segment_dims)[1]
        self.local_act = build_activation_layer(act_cfg)
        self.crpe = ConvRelativePositionEncoding(
            self.head_dims, crpe_head_splits, impl=self.impl)
        self.proj = nn.Linear(embed_dims, embed_dims)
        self.proj_drop = nn.Dropout(proj_drop_rate)
        if self.impl == 'fast' and any(True for _ in
                                       self.token_act.parameters()):
            raise ValueError('The fast GroupMixAttention applies one '
                             'activation to all segments, so it must be '
                             f'parameter-free; got {act_cfg}')
        self._cache = InferenceCache()

    @property
    def segment_norms(self) -> List[nn.Module]:
        """The norms of the attended segments, token segment first."""
        return [self.token_norm] + [
            aggregate.pointwise_conv.norm
            for aggregate in self.proxy_aggregators
        ]

    def _reference_segments(self, segments: Sequence[Tensor]) -> Tensor:
        """One module per segment, as the official code."""
        attended = [self.token_act(self.token_norm(segments[0]))]
        attended += [
            aggregate(segment) for aggregate, segment in zip(
                self.proxy_aggregators, segments[1:-1])
        ]
        return torch.cat(attended, dim=1)

    def _fast_segments(self, qkv: Tensor, inplace: bool) -> Tensor:
        """All attended segments with one depthwise op and one batched
        pointwise product: (3B, C_att, H, W), q, k and v stacked.

        The token segment is a group of its own, with a 1x1 depthwise kernel
        of ones and an identity pointwise kernel; the proxies' pointwise
        kernels make the other blocks of a block-diagonal product. Frozen
        BatchNorms are folded into the pointwise kernels and biases.

        Args:
            qkv (Tensor): The qkv projection as a (B, H, W, 3, C) view.
            inplace (bool): Whether the activation may overwrite its input
                (no autograd).
        """
        B, H, W = qkv.shape[:3]
        seg = self.segment_dims
        num_groups = len(self.proxy_aggregators) + 1
        norms = self.segment_norms
        frozen = all(is_frozen_batch_norm(n) for n in norms)
        depthwise = [a.depthwise_conv.conv for a in self.proxy_aggregators]
        tokens = qkv[..., :num_groups * seg]
        use_op = depthwise_op_applies(depthwise, qkv) and depthwise_op_pays(
            qkv, (H, W))
        if frozen:
            # Packed kernels too, whichever way this call runs: the cache
            # serves calls at other map sizes.
            dw_weight, pw_weight, pw_bias = self._cache.get(
                self._fused_sources(norms),
                lambda: self._fused_weights(norms, True, True))
        else:
            dw_weight, pw_weight, pw_bias = self._fused_weights(
                norms, False, use_op)
        dtype = qkv.dtype
        if use_op:
            maps = group_mix_dwconv(
                tokens, dw_weight.to(dtype), None,
                [1] + [conv.kernel_size[0] for conv in depthwise],
                [seg] * num_groups)
        else:
            maps = tokens.permute(3, 0, 4, 1, 2).reshape(
                3 * B, num_groups * seg, H, W)
            maps = torch.cat([
                maps[:, :seg],
                grouped_depthwise(maps[:, seg:], depthwise,
                                  [seg] * (num_groups - 1))
            ], dim=1)
        # Pointwise kernels as a batched product over (3B * groups) blocks.
        maps = maps.view(3 * B * num_groups, seg, H * W)
        pw_weight = pw_weight.to(dtype).repeat(3 * B, 1, 1)
        if pw_bias is None:
            out = torch.bmm(pw_weight, maps)
        else:
            out = torch.baddbmm(
                pw_bias.to(dtype).view(num_groups, seg, 1).repeat(3 * B, 1, 1),
                pw_weight, maps)
        out = out.view(3 * B, num_groups * seg, H, W)
        if not frozen:
            out = self._batch_norm_segments(out, norms)
        if inplace and isinstance(self.token_act, nn.Hardswish):
            return F.hardswish(out, inplace=True)
        return self.token_act(out)

    def _fused_sources(self, norms: Sequence[nn.Module]) -> List[Tensor]:
        sources = []
        for aggregate in self.proxy_aggregators:
            sources += [
                aggregate.depthwise_conv.conv.weight,
                aggregate.pointwise_conv.conv.weight
            ]
        for norm in norms:
            # A training-mode forward updates the running statistics inside
            # the batch_norm kernel, which leaves their version counters
            # alone; its num_batches_tracked.add_(1) moves.
            sources += [norm.running_mean, norm.running_var]
            if norm.num_batches_tracked is not None:
                sources.append(norm.num_batches_tracked)
            sources += [p for p in (norm.weight, norm.bias) if p is not None]
        return sources

    def _fused_weights(self, norms: Sequence[nn.Module], fold: bool,
                       packed: bool):
        """The fused kernels of the attended segments, token segment first:
        the packed depthwise ones (only for ``packed``, else None; a 1x1
        kernel of ones for the token segment), the pointwise ones as
        (groups, C_seg, C_seg) blocks and their biases (None unless
        ``fold``); with ``fold``, the norms folded in."""
        seg = self.segment_dims
        depthwise = [
            aggregate.depthwise_conv.conv
            for aggregate in self.proxy_aggregators
        ]
        dw_weight = None
        if packed:
            dw_weight = torch.cat([
                depthwise[0].weight.new_ones(seg),
                packed_depthwise(depthwise)[0]
            ])
        pw_weights = [
            aggregate.pointwise_conv.conv.weight.view(seg, seg)
            for aggregate in self.proxy_aggregators
        ]
        # Built in float32: torch 2.1 has no bfloat16 eye on the CPU.
        identity = torch.eye(
            seg, device=pw_weights[0].device).to(pw_weights[0].dtype)
        if not fold:
            return dw_weight, torch.stack([identity] + pw_weights), None
        affines = [fold_batch_norm(norm) for norm in norms]
        pw_weight = torch.stack([
            weight * scale.view(-1, 1)
            for weight, (scale, _) in zip([identity] + pw_weights, affines)
        ])
        pw_bias = torch.cat([shift for _, shift in affines])
        return dw_weight, pw_weight, pw_bias

    def _batch_norm_segments(self, x: Tensor,
                             norms: Sequence[nn.Module]) -> Tensor:
        """Apply the segment norms to their channels of ``x``, each its own
        norm (one call per segment: one BatchNorm over the concatenated
        channels needed more kernels for its concatenated parameters and
        running statistics than the four it replaced)."""
        return torch.cat([
            norm(part)
            for norm, part in zip(norms, x.split(self.segment_dims, dim=1))
        ], dim=1)

    def forward(self, x: Tensor, hw_shape: Sequence[int]) -> Tensor:
        """Attend (B, N, C) tokens of an (H, W) map; same shape out."""
        if self.impl == 'fast':
            return self._fast_forward(x, hw_shape)
        return self._reference_forward(x, hw_shape)

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

    def _fast_forward(self, x: Tensor, hw_shape: Sequence[int]) -> Tensor:
        """The same function with the attended channels kept as (3B, C_att,
        N) maps (q, k and v stacked, channels by head), the local branch in
        the token layout (channels-last convs) and the projection split
        between the two, so that no (B, N, C) tensor is transposed."""
        B, N, C = x.shape
        H, W = hw_shape
        seg = self.segment_dims
        qkv = self.qkv(x.reshape(B * N, C)).view(B, H, W, 3, C)
        inplace = not torch.is_grad_enabled()

        attended = self._fast_segments(qkv, inplace)  # (3B, C_att, H, W)
        q, k, v = attended.view(3, B * self.num_heads, self.head_dims,
                                N).unbind(0)

        # The local branch on a channels-last (B, 3 * C_seg, H, W) map of
        # q's, k's and v's last segments (the convs keep that layout, so its
        # tokens are a view).
        local = qkv[..., (len(self.proxy_aggregators) + 1) * seg:]
        local = local.reshape(B, H, W, 3 * seg).permute(0, 3, 1, 2)
        local = self.local_aggregator(local).permute(0, 2, 3, 1)
        local = self.local_act(self.local_norm(local.reshape(B * N, seg)))

        # Factorised attention on (B * heads, head_dims, N) maps, plus the
        # position encoding: out = q * crpe(v) + scale * context^T q.
        context = k.softmax(dim=-1) @ v.transpose(-2, -1)
        encoded = self.crpe.encode(attended[2 * B:])
        encoded = encoded.view(B * self.num_heads, self.head_dims, N)
        if inplace:
            out = encoded.mul_(q).baddbmm_(
                context.transpose(-2, -1), q, alpha=self.scale)
        else:
            out = torch.baddbmm(
                q * encoded, context.transpose(-2, -1), q, alpha=self.scale)
        out = out.view(B, C - seg, N)

        # proj(cat([out^T, local])): the projection's columns split between
        # the attended channels (read transposed) and the local ones.
        weight, bias = self.proj.weight, self.proj.bias
        if is_autocast_enabled(x.device.type):
            out = torch.cat(
                [out.transpose(1, 2),
                 local.view(B, N, seg).to(out.dtype)], dim=-1)
            return self.proj_drop(self.proj(out))
        local = local.view(B, N, seg)
        if B == 1:
            y = torch.addmm(bias, out[0].t(), weight[:, :C - seg].t())
            y = y.addmm_(local[0], weight[:, C - seg:].t()) if inplace else (
                y.addmm(local[0], weight[:, C - seg:].t()))
        else:
            y = torch.baddbmm(bias, out.transpose(1, 2),
                              weight[:, :C - seg].t().expand(B, -1, -1))
            y = torch.baddbmm(y, local,
                              weight[:, C - seg:].t().expand(B, -1, -1))
        return self.proj_drop(y.view(B, N, C))
