# Copyright (c) mmscalable contributors. All rights reserved.
"""The fast computation of Group-Mix Attention (``impl='fast'``).

:class:`FastGroupMixAttention` computes the function of a
:class:`~mmscalable.models.layers.GroupMixAttention` with that module's
parameters, without transposing (B, N, C) tokens: the attended segments of
q, k and v become one (3B, C_att, H, W) map (the depthwise kernels of the
segments in one :func:`mmscalable.ops.group_mix_dwconv` reading the qkv
tokens, the token segment as a 1x1 kernel of ones, on maps of at least
64x64 pixels on the CPU, else one conv per kernel size; the pointwise
kernels as one batched product; the segment norms as one BatchNorm, frozen
statistics folded into the pointwise kernels and kept between inference
calls), attended per head along its contiguous pixel axis; the local branch
runs channels-last on the qkv tokens, and the output projection takes the
attended map transposed and the local tokens through its split weight
instead of a concatenation. The position encoding's head groups run the
same way, with their biases. The op was measured faster than the per-group
convs on large maps on the CPU; its CUDA kernel is used where it was built
but its speed on GPUs has not been measured yet.

Whether the depthwise convs run as compiled ops is the backend of the call
(``'ext'`` or ``'explicit'``), chosen by
:func:`~mmscalable.models.layers.dispatch.select_backend`. Each other choice
between two computations is made by one predicate: :func:`works_in_place`,
:func:`folds_segment_norms`, :func:`projects_concatenated` and
:func:`is_single_image`.
"""
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from mmscalable.ops import group_mix_dwconv
from mmscalable.torch_compat import is_autocast_enabled
from .fused_convs import (InferenceCache, fold_batch_norm,
                          grouped_depthwise, is_frozen_batch_norm,
                          packed_depthwise)


def works_in_place() -> bool:
    """Whether the computation may overwrite its own temporaries: when
    autograd records none of them."""
    return not torch.is_grad_enabled()


def folds_segment_norms(norms: Sequence[nn.Module]) -> bool:
    """Whether the segment norms fold into the pointwise kernels: all of
    them BatchNorms with frozen statistics."""
    return all(is_frozen_batch_norm(norm) for norm in norms)


def projects_concatenated(x: Tensor) -> bool:
    """Whether the output projection runs on the concatenated branches
    instead of through its split weight: under autocast, where the branches
    are of different precisions and ``nn.Linear`` casts its inputs."""
    return is_autocast_enabled(x.device.type)


def is_single_image(x: Tensor) -> bool:
    """Whether ``x`` holds one image, whose products are plain matrix
    products rather than batched ones."""
    return x.shape[0] == 1


def check_activation(activation: nn.Module, act_cfg: dict) -> None:
    """Raise unless ``activation`` is parameter-free: the fast computation
    applies one activation to all attended segments."""
    if any(True for _ in activation.parameters()):
        raise ValueError('The fast GroupMixAttention applies one '
                         'activation to all segments, so it must be '
                         f'parameter-free; got {act_cfg}')


def segment_kernels(attn: nn.Module,
                    packed: bool) -> Tuple[Optional[Tensor], Tensor]:
    """The kernels of the attended segments, token segment first: the
    depthwise ones packed for :func:`mmscalable.ops.group_mix_dwconv` (only
    with ``packed``, else None; a 1x1 kernel of ones for the token segment)
    and the pointwise ones as (groups, C_seg, C_seg) blocks (the identity
    for the token segment)."""
    seg = attn.segment_dims
    depthwise = attn.proxy_depthwise_convs()
    dw_weight = None
    if packed:
        dw_weight = torch.cat([
            depthwise[0].weight.new_ones(seg),
            packed_depthwise(depthwise)[0]
        ])
    pw_weights = [
        aggregate.pointwise_conv.conv.weight.view(seg, seg)
        for aggregate in attn.proxy_aggregators
    ]
    # Built in float32: torch 2.1 has no bfloat16 eye on the CPU.
    identity = torch.eye(
        seg, device=pw_weights[0].device).to(pw_weights[0].dtype)
    return dw_weight, torch.stack([identity] + pw_weights)


def folded_segment_kernels(
        attn: nn.Module,
        norms: Sequence[nn.Module]) -> Tuple[Tensor, Tensor, Tensor]:
    """:func:`segment_kernels` (packed) with the frozen segment ``norms``
    folded into the pointwise kernels, and their biases (C_att, )."""
    dw_weight, pw_weight = segment_kernels(attn, packed=True)
    scales, shifts = zip(*(fold_batch_norm(norm) for norm in norms))
    pw_weight = pw_weight * torch.stack(scales).unsqueeze(-1)
    return dw_weight, pw_weight, torch.cat(shifts)


def folded_kernel_sources(attn: nn.Module,
                          norms: Sequence[nn.Module]) -> List[Tensor]:
    """The tensors :func:`folded_segment_kernels` derives from."""
    sources = []
    for aggregate in attn.proxy_aggregators:
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


def depthwise_with_op(attn: nn.Module, qkv: Tensor,
                      dw_weight: Tensor) -> Tensor:
    """The attended segments' depthwise convs as one
    :func:`mmscalable.ops.group_mix_dwconv` reading the (B, H, W, 3, C) qkv
    view: (3B, C_att, H, W)."""
    seg = attn.segment_dims
    kernel_sizes = [1] + [
        conv.kernel_size[0] for conv in attn.proxy_depthwise_convs()
    ]
    tokens = qkv[..., :len(kernel_sizes) * seg]
    return group_mix_dwconv(tokens, dw_weight.to(qkv.dtype), None,
                            kernel_sizes, [seg] * len(kernel_sizes))


def depthwise_per_group(attn: nn.Module, qkv: Tensor) -> Tensor:
    """The attended segments' depthwise convs, one conv per proxy, on the
    (3B, C_att, H, W) map of the (B, H, W, 3, C) qkv view."""
    B, H, W = qkv.shape[:3]
    seg = attn.segment_dims
    num_proxies = len(attn.proxy_aggregators)
    maps = qkv[..., :(num_proxies + 1) * seg].permute(3, 0, 4, 1, 2)
    maps = maps.reshape(3 * B, (num_proxies + 1) * seg, H, W)
    return torch.cat([
        maps[:, :seg],
        grouped_depthwise(maps[:, seg:], attn.proxy_depthwise_convs(),
                          [seg] * num_proxies)
    ],
                     dim=1)


def pointwise(maps: Tensor, weight: Tensor, bias: Optional[Tensor],
              dtype: torch.dtype) -> Tensor:
    """The pointwise kernels of the segments, (groups, C_seg, C_seg)
    blocks, as one batched product over the (3B * groups) blocks of the
    (3B, C_att, H, W) ``maps``; the kernels are cast to ``dtype``."""
    S, C, H, W = maps.shape
    num_groups, seg = weight.shape[:2]
    maps = maps.view(S * num_groups, seg, H * W)
    weight = weight.to(dtype).repeat(S, 1, 1)
    if bias is None:
        out = torch.bmm(weight, maps)
    else:
        out = torch.baddbmm(
            bias.to(dtype).view(num_groups, seg, 1).repeat(S, 1, 1), weight,
            maps)
    return out.view(S, C, H, W)


def batch_norm_segments(x: Tensor, norms: Sequence[nn.Module],
                        segment_dims: int) -> Tensor:
    """Apply the segment norms to their channels of ``x``, each its own
    norm (one call per segment: one BatchNorm over the concatenated
    channels needed more kernels for its concatenated parameters and
    running statistics than the four it replaced)."""
    return torch.cat([
        norm(part) for norm, part in zip(norms, x.split(segment_dims, dim=1))
    ],
                     dim=1)


def activate(activation: nn.Module, x: Tensor, inplace: bool) -> Tensor:
    """``activation(x)``, overwriting ``x`` with ``inplace`` where the
    activation has an in-place form (Hardswish, the official one)."""
    if inplace and isinstance(activation, nn.Hardswish):
        return F.hardswish(x, inplace=True)
    return activation(x)


def local_branch(attn: nn.Module, qkv: Tensor) -> Tensor:
    """The non-attended branch, (B * N, C_seg), on a channels-last
    (B, 3 * C_seg, H, W) map of q's, k's and v's last segments in the
    (B, H, W, 3, C) qkv view (the convs keep that layout, so its tokens are
    a view)."""
    B, H, W, _, C = qkv.shape
    seg = attn.segment_dims
    local = qkv[..., C - seg:].reshape(B, H, W, 3 * seg).permute(0, 3, 1, 2)
    local = attn.local_aggregator(local).permute(0, 2, 3, 1)
    return attn.local_act(attn.local_norm(local.reshape(B * H * W, seg)))


def mix_with_positions(q: Tensor, encoded: Tensor, context: Tensor,
                       scale: float, inplace: bool) -> Tensor:
    """``q * encoded + scale * context^T q`` on (B * heads, head_dims, N)
    maps, in ``encoded``'s memory with ``inplace``."""
    if inplace:
        return encoded.mul_(q).baddbmm_(
            context.transpose(-2, -1), q, alpha=scale)
    return torch.baddbmm(
        q * encoded, context.transpose(-2, -1), q, alpha=scale)


def project_concatenated(attn: nn.Module, out: Tensor,
                         local: Tensor) -> Tensor:
    """``proj(cat([out^T, local]))`` of the attended (B, C_att, N) map and
    the local (B, N, C_seg) tokens, as the reference computes it."""
    out = torch.cat([out.transpose(1, 2), local.to(out.dtype)], dim=-1)
    return attn.proj(out)


def project_single_image(attn: nn.Module, out: Tensor, local: Tensor,
                         inplace: bool) -> Tensor:
    """:func:`project_concatenated` of one image as two matrix products,
    the projection's columns split between the attended channels (read
    transposed) and the local ones."""
    weight, bias = attn.proj.weight, attn.proj.bias
    attended_dims = out.shape[1]
    y = torch.addmm(bias, out[0].t(), weight[:, :attended_dims].t())
    add_product = torch.Tensor.addmm_ if inplace else torch.Tensor.addmm
    y = add_product(y, local[0], weight[:, attended_dims:].t())
    return y.unsqueeze(0)


def project_batched(attn: nn.Module, out: Tensor, local: Tensor) -> Tensor:
    """:func:`project_single_image` for a batch: batched products."""
    weight, bias = attn.proj.weight, attn.proj.bias
    B, attended_dims = out.shape[:2]
    y = torch.baddbmm(bias, out.transpose(1, 2),
                      weight[:, :attended_dims].t().expand(B, -1, -1))
    return torch.baddbmm(y, local,
                         weight[:, attended_dims:].t().expand(B, -1, -1))


class FastGroupMixAttention:
    """The fast computation of a Group-Mix Attention (see the module's
    docstring), on the parameters of the ``GroupMixAttention`` it is given.

    It holds the fused kernels between inference calls
    (:class:`~mmscalable.models.layers.fused_convs.InferenceCache`); it has
    no parameters of its own.
    """

    def __init__(self) -> None:
        self._segment_kernels = InferenceCache()
        self._position_kernels = InferenceCache()

    def __call__(self, attn: nn.Module, x: Tensor, hw_shape: Sequence[int],
                 use_depthwise_op: bool) -> Tensor:
        """Attend (B, N, C) tokens of an (H, W) map as ``attn`` does, the
        depthwise convs as compiled ops if ``use_depthwise_op`` (the
        backend ``'ext'`` of
        :func:`~mmscalable.models.layers.dispatch.select_backend`).

        The attended channels are kept as (3B, C_att, N) maps (q, k and v
        stacked, channels by head), the local branch in the token layout
        (channels-last convs) and the projection split between the two, so
        that no (B, N, C) tensor is transposed.
        """
        B, N, C = x.shape
        qkv = attn.qkv(x.reshape(B * N, C)).view(B, *hw_shape, 3, C)
        inplace = works_in_place()
        attended = self.attended_segments(attn, qkv, inplace,
                                          use_depthwise_op)
        local = local_branch(attn, qkv).view(B, N, attn.segment_dims)
        out = self.attend(attn, attended, inplace, use_depthwise_op)
        if projects_concatenated(x):
            return attn.proj_drop(project_concatenated(attn, out, local))
        if is_single_image(x):
            y = project_single_image(attn, out, local, inplace)
        else:
            y = project_batched(attn, out, local)
        return attn.proj_drop(y)

    def attended_segments(self, attn: nn.Module, qkv: Tensor, inplace: bool,
                          use_op: bool) -> Tensor:
        """All attended segments with one depthwise step and one batched
        pointwise product: (3B, C_att, H, W), q, k and v stacked.

        The token segment is a group of its own, with a 1x1 depthwise kernel
        of ones and an identity pointwise kernel; the proxies' pointwise
        kernels make the other blocks of a block-diagonal product. Frozen
        BatchNorms are folded into the pointwise kernels and biases.

        Args:
            attn (nn.Module): The ``GroupMixAttention``.
            qkv (Tensor): Its qkv projection as a (B, H, W, 3, C) view.
            inplace (bool): Whether the activation may overwrite its input.
            use_op (bool): Whether the depthwise convs run as one
                :func:`mmscalable.ops.group_mix_dwconv`.
        """
        norms = attn.segment_norms
        folded = folds_segment_norms(norms)
        if folded:
            # Packed kernels too, whichever way this call runs: the cache
            # serves calls at other map sizes.
            dw_weight, pw_weight, pw_bias = self._segment_kernels.get(
                folded_kernel_sources(attn, norms),
                lambda: folded_segment_kernels(attn, norms))
        else:
            dw_weight, pw_weight = segment_kernels(attn, packed=use_op)
            pw_bias = None
        if use_op:
            maps = depthwise_with_op(attn, qkv, dw_weight)
        else:
            maps = depthwise_per_group(attn, qkv)
        out = pointwise(maps, pw_weight, pw_bias, qkv.dtype)
        if not folded:
            out = batch_norm_segments(out, norms, attn.segment_dims)
        return activate(attn.token_act, out, inplace)

    def attend(self, attn: nn.Module, attended: Tensor, inplace: bool,
               use_op: bool) -> Tensor:
        """Factorised attention of the (3B, C_att, H, W) ``attended`` map on
        (B * heads, head_dims, N) maps, plus the position encoding:
        ``q * crpe(v) + scale * context^T q``, as (B, C_att, N)."""
        B = attended.shape[0] // 3
        N = attended.shape[2] * attended.shape[3]
        q, k, v = attended.view(3, B * attn.num_heads, attn.head_dims,
                                N).unbind(0)
        context = k.softmax(dim=-1) @ v.transpose(-2, -1)
        encoded = self.encode_positions(attn.crpe, attended[2 * B:], use_op)
        encoded = encoded.view(B * attn.num_heads, attn.head_dims, N)
        out = mix_with_positions(q, encoded, context, attn.scale, inplace)
        return out.view(B, -1, N)

    def encode_positions(self, crpe: nn.Module, value_map: Tensor,
                         use_op: bool) -> Tensor:
        """The head groups' convs of the position encoding ``crpe`` on
        ``value_map`` (B, heads * head_dims, H, W): one
        :func:`mmscalable.ops.group_mix_dwconv` if ``use_op``, else one conv
        per group. Returns a contiguous map of the same shape."""
        if use_op:
            return self._encode_positions_with_op(crpe, value_map)
        return grouped_depthwise(value_map, crpe.convs, crpe.channel_splits)

    def _encode_positions_with_op(self, crpe: nn.Module,
                                  value_map: Tensor) -> Tensor:
        weight, bias = self._position_kernels.get(
            [p for conv in crpe.convs for p in (conv.weight, conv.bias)],
            lambda: packed_depthwise(crpe.convs))
        # (B, C, H, W) seen as (B, H, W, 1 stream, C).
        # Under autocast the map may be of a lower precision than the
        # weights, which F.conv2d would cast.
        return group_mix_dwconv(
            value_map.permute(0, 2, 3, 1).unsqueeze(3),
            weight.to(value_map.dtype),
            None if bias is None else bias.to(value_map.dtype),
            [conv.kernel_size[0] for conv in crpe.convs],
            crpe.channel_splits)
