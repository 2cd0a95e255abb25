# Copyright (c) mmscalable contributors. All rights reserved.
"""Refined attention of Refiner-ViT (Zhou et al., "Refiner: Refining
Self-attention for Vision Transformers", 2021).

Blocks alternate between two kinds, as in the released code:

* an *attention* block computes multi-head attention maps ``A`` (B, heads,
  N, N), adds ``d ** -0.5`` times the map of the previous attention block
  when there is one, attends with them and passes them on;
* a *refiner* block has no queries or keys: it refines the map it receives,
  ``d ** -0.5 * BN(A + R(A))``, where ``R`` expands the heads 1x1, convolves
  each expanded map 3x3 (depthwise, the N x N map as an image in token
  order) and projects back 1x1, attends with it and passes the unrefined
  map on.

Tokens are (B, N, C), with any class token at index 0 (the maps are
convolved in that order). ``impl='reference'`` is the official
computation, which holds every N x N map. ``impl='fast'`` (the default) is
the same computation while the maps are within its ``memory_budget``
(classification sizes, where it is the fastest), and beyond it computes the
same result exactly in chunks of query rows
(``chunked_refined_attention.py``), so that detection and segmentation
sizes fit in memory.
"""
import math
from typing import Optional, Tuple

import torch
import torch.nn as nn
from mmcv.cnn import ConvModule, build_norm_layer
from mmengine.model import BaseModule, Sequential
from torch import Tensor

from mmscalable.ops import fused_refined_attention
from mmscalable.registry import MODELS
from .attention_impl import check_impl
from .chunked_refined_attention import (RefinementSpec,
                                        chunked_chained_attention,
                                        chunked_refiner_attention,
                                        rows_per_chunk)
from .dispatch import select_backend
from .fused_convs import fold_batch_norm, is_frozen_batch_norm


class AttentionMapRefinement(BaseModule):
    """``R(A)``: head expansion, 3x3 depthwise conv on the maps, reduction.

    Args:
        num_heads (int): Heads of the maps (input and output channels).
        expand_ratio (int): Head expansion. Defaults to 3.
        kernel_size (int): Side of the depthwise conv. Defaults to 3.
        norm_cfg (dict): Norm after each conv. Defaults to
            ``dict(type='BN')``.
        act_cfg (dict): Activation after the first two norms. Defaults to
            ``dict(type='ReLU6')``.
        init_cfg (dict, optional): Initialization config. Defaults to None.
    """

    def __init__(self,
                 num_heads: int,
                 expand_ratio: int = 3,
                 kernel_size: int = 3,
                 norm_cfg: dict = dict(type='BN'),
                 act_cfg: dict = dict(type='ReLU6'),
                 init_cfg: Optional[dict] = None):
        super().__init__(init_cfg=init_cfg)
        hidden = num_heads * expand_ratio
        self.layers = Sequential(
            ConvModule(
                num_heads,
                hidden,
                1,
                bias=False,
                norm_cfg=norm_cfg,
                act_cfg=act_cfg),
            ConvModule(
                hidden,
                hidden,
                kernel_size,
                padding=kernel_size // 2,
                groups=hidden,
                bias=False,
                norm_cfg=norm_cfg,
                act_cfg=act_cfg),
            ConvModule(
                hidden,
                num_heads,
                1,
                bias=False,
                norm_cfg=norm_cfg,
                act_cfg=None))

    def forward(self, attn: Tensor) -> Tensor:
        """(B, heads, N, N) maps to their refinement ``R(A)``, same shape."""
        return self.layers(attn)


@MODELS.register_module()
class RefinedAttention(BaseModule):
    """Multi-head attention that produces, or refines, attention maps.

    Args:
        embed_dims (int): Number of input (and output) channels C.
        num_heads (int): Number of heads.
        refine (bool): A refiner block (values only; refines the received
            map) instead of an attention block. Defaults to False.
        expand_ratio (int): Head expansion of the refinement. Defaults to 3.
        qkv_bias (bool): Bias of the q/k/v (or v) projection.
            Defaults to True.
        attn_drop_rate (float): Dropout on the attention maps of attention
            blocks. Defaults to 0.
        proj_drop_rate (float): Dropout after the output projection.
            Defaults to 0.
        norm_cfg (dict): Norms of the refinement and of ``A + R(A)``.
            Defaults to ``dict(type='BN')``.
        impl (str): ``'reference'`` (every N x N map in memory, as the
            official code) or ``'fast'`` (the same, or exact chunks of query
            rows when the maps exceed ``memory_budget``).
            Defaults to ``'fast'``.
        memory_budget (int): Bytes of attention-map temporaries that
            ``impl='fast'`` lets the block hold at once. When one image's
            expanded maps (``expand_ratio * num_heads * N * N`` elements of
            the input's dtype) take more, the maps are computed in chunks of
            as many query rows as keep a chunk's temporaries (about
            ``8 * B * expand_ratio * num_heads * N`` elements per row)
            within it; otherwise whole. The N x N map an attention block
            passes on is held whole either way. A smaller budget chunks
            smaller maps, in smaller chunks. ``impl='reference'`` ignores
            it. Defaults to ``256 * 2**20`` (256 MiB).
        init_cfg (dict, optional): Initialization config. Defaults to None.

    Attributes:
        backend (str | None): The backend of the last call
            (:func:`~mmscalable.models.layers.dispatch.select_backend`):
            ``'reference'``; for a refiner block ``'ext'`` (the compiled
            fused op, :func:`mmscalable.ops.fused_kernel_applies`),
            ``'chunked'`` or ``'explicit'`` (the whole refined map); for an
            attention block ``'chunked'`` or ``'explicit'``. None before
            the first call.
    """

    def __init__(self,
                 embed_dims: int,
                 num_heads: int,
                 refine: bool = False,
                 expand_ratio: int = 3,
                 qkv_bias: bool = True,
                 attn_drop_rate: float = 0.,
                 proj_drop_rate: float = 0.,
                 norm_cfg: dict = dict(type='BN'),
                 impl: str = 'fast',
                 memory_budget: int = 256 * 2**20,
                 init_cfg: Optional[dict] = None):
        super().__init__(init_cfg=init_cfg)
        self.impl = check_impl(impl)
        if memory_budget <= 0:
            raise ValueError(
                f'memory_budget must be positive, got {memory_budget}')
        self.memory_budget = memory_budget
        self.backend: Optional[str] = None
        self.expand_ratio = expand_ratio
        if embed_dims % num_heads != 0:
            raise ValueError(f'embed_dims ({embed_dims}) must be divisible '
                             f'by num_heads ({num_heads})')
        self.embed_dims = embed_dims
        self.num_heads = num_heads
        self.head_dims = embed_dims // num_heads
        self.refine = refine
        self.scale = self.head_dims**-0.5
        if refine:
            self.v = nn.Linear(embed_dims, embed_dims, bias=qkv_bias)
            self.refinement = AttentionMapRefinement(
                num_heads, expand_ratio, norm_cfg=norm_cfg)
            self.refined_norm = build_norm_layer(norm_cfg, num_heads)[1]
        else:
            self.qkv = nn.Linear(embed_dims, 3 * embed_dims, bias=qkv_bias)
            self.attn_drop = nn.Dropout(attn_drop_rate)
        self.proj = nn.Linear(embed_dims, embed_dims)
        self.proj_drop = nn.Dropout(proj_drop_rate)

    def _split_heads(self, x: Tensor) -> Tensor:
        """(B, N, heads * d) to (B, heads, N, d)."""
        B, N, _ = x.shape
        return x.reshape(B, N, self.num_heads, -1).transpose(1, 2)

    def forward(self,
                x: Tensor,
                prev_attn: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
        """Attend.

        Args:
            x (Tensor): Tokens (B, N, C).
            prev_attn (Tensor, optional): The map passed on by the previous
                block, (B, heads, N, N). Required by refiner blocks.

        Returns:
            tuple[Tensor, Tensor]: The output tokens (B, N, C) and the map to
            pass on to the next block.
        """
        self._check_inputs(x, prev_attn)
        B, N, C = x.shape
        chunk_rows = self._chunk_rows(x)
        if self.refine:
            out = self._refiner_heads(x, prev_attn, chunk_rows)
            passed_on = prev_attn
        else:
            out, passed_on = self._attention_heads(x, prev_attn, chunk_rows)
        out = out.transpose(1, 2).reshape(B, N, C)
        return self.proj_drop(self.proj(out)), passed_on

    def _check_inputs(self, x: Tensor, prev_attn: Optional[Tensor]) -> None:
        """Raise if ``prev_attn`` does not fit ``x`` or a refiner lacks it."""
        B, N, _ = x.shape
        if prev_attn is not None and prev_attn.shape != (B, self.num_heads, N,
                                                         N):
            raise ValueError(
                f'prev_attn must have shape {(B, self.num_heads, N, N)} '
                f'for tokens of shape {tuple(x.shape)}, got '
                f'{tuple(prev_attn.shape)}')
        if self.refine and prev_attn is None:
            raise ValueError('A refiner block needs the attention map of '
                             'the previous block (prev_attn)')

    def _refiner_heads(self, x: Tensor, prev_attn: Tensor,
                       chunk_rows: Optional[int]) -> Tensor:
        """A refiner block's ``refine(prev_attn) @ v``, (B, heads, N, d)."""
        v = self._split_heads(self.v(x))
        self.backend = select_backend(
            self, x, prev_attn=prev_attn, value=v, chunk_rows=chunk_rows)
        if self.backend == 'ext':
            return fused_refined_attention(prev_attn, v,
                                           *self._folded_refinement())
        if self.backend == 'chunked':
            return chunked_refiner_attention(self._refinement_spec(),
                                             prev_attn, v, chunk_rows)
        return self._refined_map(prev_attn) @ v

    @property
    def hidden_channels(self) -> int:
        """The expanded channels E of the refinement."""
        return self.num_heads * self.expand_ratio

    def fusable(self) -> bool:
        """Whether the compiled fused refinement can stand for this refiner
        block as it is: frozen norms (nothing to learn about batch
        statistics), ReLU6 activations, a 3x3 depthwise conv and convs
        without bias. :func:`~mmscalable.models.layers.dispatch.select_backend`
        adds what the call decides (the kernel's device, dtype and sizes)."""
        expand, depthwise, reduce = self.refinement.layers
        norms = (expand.norm, depthwise.norm, reduce.norm, self.refined_norm)
        return (all(is_frozen_batch_norm(norm) for norm in norms)
                and all(
                    isinstance(layer.activate, nn.ReLU6)
                    for layer in (expand, depthwise))
                and depthwise.conv.kernel_size == (3, 3)
                and all(layer.conv.bias is None
                        for layer in (expand, depthwise, reduce)))

    def _folded_refinement(self) -> Tuple[Tensor, ...]:
        """The refinement's convs with their frozen norms and the block's
        scale folded in: the seven tensors of
        :func:`mmscalable.ops.refined_attention_reference`. Differentiable,
        so the gradients reach the convs and the norms' affine weights."""
        expand, depthwise, reduce = self.refinement.layers
        hidden, heads = expand.conv.weight.shape[:2]
        scale1, shift1 = fold_batch_norm(expand.norm)
        scale2, shift2 = fold_batch_norm(depthwise.norm)
        scale3, shift3 = fold_batch_norm(reduce.norm)
        scale4, shift4 = fold_batch_norm(self.refined_norm)
        # M = scale * (s4 * (A + s3 * W3 h2 + t3) + t4)
        alpha = self.scale * scale4
        return (expand.conv.weight.view(hidden, heads) * scale1[:, None],
                shift1,
                depthwise.conv.weight.view(hidden, 3, 3) *
                scale2[:, None, None], shift2,
                reduce.conv.weight.view(heads, hidden) *
                (alpha * scale3)[:, None],
                alpha * shift3 + self.scale * shift4, alpha)

    def _refined_map(self, prev_attn: Tensor) -> Tensor:
        """The whole refined map ``d ** -0.5 * BN(A + R(A))``."""
        attn = self.refined_norm(prev_attn + self.refinement(prev_attn))
        return attn * self.scale

    def _attention_heads(self, x: Tensor, prev_attn: Optional[Tensor],
                         chunk_rows: Optional[int]) -> Tuple[Tensor, Tensor]:
        """An attention block's ``A @ v``, (B, heads, N, d), and its map A."""
        B, N, _ = x.shape
        q, k, v = self.qkv(x).reshape(B, N, 3, self.num_heads,
                                      self.head_dims).permute(2, 0, 3, 1,
                                                              4).unbind(0)
        self.backend = select_backend(self, x, chunk_rows=chunk_rows)
        if self.backend != 'chunked':
            passed_on = self._chained_map(q, k, prev_attn)
            return passed_on @ v, passed_on
        return chunked_chained_attention(q, k, v, prev_attn, self.scale,
                                         chunk_rows)

    def _chained_map(self, q: Tensor, k: Tensor,
                     prev_attn: Optional[Tensor]) -> Tensor:
        """The whole map ``softmax(q k^T * scale) + scale * prev_attn``."""
        # The map itself goes on to the next block, so it is materialised
        # (no fused attention). q and k are each scaled by sqrt(scale), as
        # in the released code.
        root_scale = math.sqrt(self.scale)
        attn = ((q * root_scale) @ (k * root_scale).transpose(-2, -1))
        attn = attn.softmax(dim=-1)
        if prev_attn is None:
            pass
        elif self.impl == 'reference':
            attn = attn + prev_attn * self.scale
        elif torch.is_grad_enabled() or torch.jit.is_tracing():
            # One pass and no (B, heads, N, N) temporary for the product.
            attn = torch.add(attn, prev_attn, alpha=self.scale)
        else:
            attn.add_(prev_attn, alpha=self.scale)
        return self.attn_drop(attn)

    def _chunk_rows(self, x: Tensor) -> Optional[int]:
        """Query rows per chunk under ``memory_budget``; None: whole maps."""
        B, N, _ = x.shape
        hidden = self.hidden_channels
        element_size = x.element_size()
        if (self.impl == 'reference'
                or hidden * N * N * element_size <= self.memory_budget):
            return None
        if (not self.refine and self.training and self.attn_drop.p > 0):
            raise ValueError(
                'The chunked attention of impl="fast" has no attention-map '
                'dropout; use attn_drop_rate=0, impl="reference" or a '
                'memory_budget that holds the whole maps')
        return rows_per_chunk(B, hidden, N, element_size, self.memory_budget)

    def _refinement_spec(self) -> RefinementSpec:
        """The refinement's convs, norms and activations, for the chunks."""
        expand, depthwise, reduce = self.refinement.layers
        return RefinementSpec(
            expand.conv,
            depthwise.conv,
            reduce.conv,
            norms=(expand.norm, depthwise.norm, reduce.norm,
                   self.refined_norm),
            acts=(expand.activate, depthwise.activate),
            scale=self.scale)
