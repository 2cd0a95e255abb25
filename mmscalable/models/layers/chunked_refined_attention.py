# Copyright (c) mmscalable contributors. All rights reserved.
"""Memory-bounded exact refined attention.

The straightforward computation of ``RefinedAttention`` holds, per block, the
softmax map, the chained map and five or six maps of 3 x heads channels, each
N x N, and autograd keeps most of them for backward: about 150 GiB for one
800x1344 image in Refiner-ViT-S. The functions here compute the same result
in chunks of query rows:

* An attention block computes its softmax map a chunk of rows at a time,
  adds the scaled map it received and writes the sum (the chained map) into
  the one (B, heads, N, N) tensor it passes on. Backward recomputes the
  softmax rows from q and k.
* A refiner block refines the received map a chunk of rows at a time, with
  the one-row halo its 3x3 convolution needs (the map is the conv's image,
  rows are queries), multiplies each refined chunk with the values at once
  and never holds the expanded maps or the refined map whole. Backward
  recomputes each chunk under autograd.

So a block holds its chained map (what it passes on) plus chunk-sized
temporaries, and training keeps one N x N map per attention block for
backward (the refiner block that follows reads the same tensor).

BatchNorm on the maps in training mode normalises with statistics of the
whole map. They are computed in passes before the output pass: pass k
recomputes the chunks up to the input of the k-th norm, with the statistics
of the earlier norms known, and accumulates its moments (per-chunk mean and
centred second moment, combined in float64). Their gradient is exact: a
first backward pass takes the gradient with the statistics held as inputs;
then, for the last norm back to the first, a pass propagates the gradient of
its mean and variance through the chunks that produced its input. In eval
mode (``norm_eval`` or ``model.eval()``) the running statistics are used and
those passes disappear. Running statistics are updated as ``nn.BatchNorm2d``
updates them.
"""
import math
from typing import Callable, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn.modules.batchnorm import _BatchNorm

from mmscalable.torch_compat import get_autocast_dtype, is_autocast_enabled

# The refinement's norms in order: after the 1x1 expansion, after the 3x3
# depthwise conv, after the 1x1 reduction, and on ``A + R(A)``.
NUM_MAP_NORMS = 4


def rows_per_chunk(batch: int, channels: int, num_tokens: int,
                   element_size: int, memory_budget: int) -> int:
    """Query rows per chunk so that a chunk's temporaries fit in about
    ``memory_budget`` bytes.

    A chunk of r rows holds about eight tensors of (batch, channels, r, N)
    while it is refined and its autograd graph in backward.
    """
    per_row = 8 * batch * channels * num_tokens * element_size
    return max(1, min(num_tokens, memory_budget // per_row))


def _chunks(num_rows: int, rows: int):
    for start in range(0, num_rows, rows):
        yield start, min(start + rows, num_rows)


def _halo(start: int, end: int, num_rows: int) -> Tuple[int, int]:
    """The input rows a chunk of output rows needs: one more on each side,
    inside the map."""
    return max(start - 1, 0), min(end + 1, num_rows)


class _MapNormSpec:
    """What the chunked functions need to know about one map BatchNorm."""

    def __init__(self, norm: _BatchNorm):
        self.module = norm
        self.eps = norm.eps
        # Batch statistics in training mode, or without running statistics.
        self.batch_stats = norm.training or norm.running_mean is None

    def update_running_stats(self, mean: Tensor, var: Tensor,
                             count: int) -> None:
        norm = self.module
        if not (norm.training and norm.track_running_stats):
            return
        norm.num_batches_tracked.add_(1)
        if norm.momentum is None:
            factor = 1.0 / float(norm.num_batches_tracked)
        else:
            factor = norm.momentum
        unbiased = var * (count / max(count - 1, 1))
        norm.running_mean.mul_(1 - factor).add_(
            mean.to(norm.running_mean.dtype), alpha=factor)
        norm.running_var.mul_(1 - factor).add_(
            unbiased.to(norm.running_var.dtype), alpha=factor)


class RefinementSpec:
    """The parameters and settings of a refiner block's map refinement, in
    the layout the chunked functions use.

    Args:
        expand_conv, depthwise_conv, reduce_conv (nn.Conv2d): The three
            convolutions of ``R``.
        norms (Sequence[_BatchNorm]): Their norms and the norm of
            ``A + R(A)``, in order.
        acts (Sequence[nn.Module]): Activations after the first two norms.
        scale (float): Factor on the refined map.
    """

    def __init__(self, expand_conv, depthwise_conv, reduce_conv,
                 norms: Sequence[_BatchNorm], acts: Sequence, scale: float):
        if len(norms) != NUM_MAP_NORMS:
            raise ValueError(f'Expected {NUM_MAP_NORMS} map norms, got '
                             f'{len(norms)}')
        for conv in (expand_conv, depthwise_conv, reduce_conv):
            if conv.bias is not None or conv.stride != (1, 1):
                raise ValueError('The chunked refinement expects stride-1 '
                                 'convolutions without bias')
        if depthwise_conv.kernel_size != (3,
                                          3) or depthwise_conv.padding != (1,
                                                                           1):
            raise ValueError('The chunked refinement handles a 3x3 depthwise '
                             'convolution with padding 1 (a one-row halo), '
                             f'got kernel {depthwise_conv.kernel_size}, '
                             f'padding {depthwise_conv.padding}')
        self.weights = [
            expand_conv.weight, depthwise_conv.weight, reduce_conv.weight
        ]
        self.groups = depthwise_conv.groups
        self.norms = [_MapNormSpec(norm) for norm in norms]
        self.acts = list(acts)
        self.scale = scale

    def affine_params(self) -> List[Optional[Tensor]]:
        params = []
        for norm in self.norms:
            params += [norm.module.weight, norm.module.bias]
        return params


def _batch_norm(x: Tensor, mean: Tensor, var: Tensor, weight: Optional[Tensor],
                bias: Optional[Tensor], eps: float) -> Tensor:
    shape = (1, -1, 1, 1)
    y = (x - mean.view(shape)) * torch.rsqrt(var + eps).view(shape)
    if weight is not None:
        y = y * weight.view(shape) + bias.view(shape)
    return y


def _refine_rows(spec: RefinementSpec, a_in: Tensor, top: int, bottom: int,
                 weights: Sequence[Tensor], affine: Sequence[Optional[Tensor]],
                 stats: Sequence[Optional[Tuple[Tensor, Tensor]]],
                 stage: int) -> Tensor:
    """Refine the rows of a chunk.

    Args:
        a_in (Tensor): Map rows (B, heads, r + top + bottom, N): the chunk's
            rows and their halo rows.
        top, bottom (int): Halo rows above and below in ``a_in`` (0 at the
            map's edge, where the conv pads with zeros).
        weights, affine, stats: Conv weights, norm weights and biases (two
            per norm) and (mean, var) of the norms known so far.
        stage (int): Return the input of norm ``stage`` (0-3) or, with 4,
            the scaled refined map.

    Returns:
        Tensor: (B, C, r, N) for the chunk's rows.
    """
    w_expand, w_depthwise, w_reduce = weights

    def norm(x, k):
        return _batch_norm(x, *stats[k], affine[2 * k], affine[2 * k + 1],
                           spec.norms[k].eps)

    rows = a_in.shape[2] - top - bottom
    y = F.conv2d(a_in if stage > 0 else a_in[:, :, top:top + rows], w_expand)
    if stage == 0:
        return y
    y = spec.acts[0](norm(y, 0))
    # Zero rows where the chunk touches the map's edge; the halo elsewhere.
    y = F.pad(y, (0, 0, 1 - top, 1 - bottom))
    y = F.conv2d(y, w_depthwise, padding=(0, 1), groups=spec.groups)
    if stage == 1:
        return y
    y = F.conv2d(spec.acts[1](norm(y, 1)), w_reduce)
    if stage == 2:
        return y
    y = a_in[:, :, top:top + rows] + norm(y, 2)
    if stage == 3:
        return y
    return norm(y, 3) * spec.scale


class _MomentAccumulator:
    """Per-channel mean and biased variance over (B, r, N) chunks, combined
    in float64 (Chan et al.'s parallel update) so that many chunks lose no
    precision."""

    def __init__(self):
        self.count = 0
        self.mean = None
        self.m2 = None

    def add(self, x: Tensor) -> None:
        n = x.numel() // x.shape[1]
        # At least float32 within a chunk, whatever the autocast dtype.
        dtype = torch.promote_types(x.dtype, torch.float32)
        mean = x.mean((0, 2, 3), dtype=dtype)
        m2 = (x.to(dtype) - mean.view(1, -1, 1, 1)).square().sum((0, 2, 3))
        mean, m2 = mean.double(), m2.double()
        if self.mean is None:
            self.count, self.mean, self.m2 = n, mean, m2
            return
        total = self.count + n
        delta = mean - self.mean
        self.mean = self.mean + delta * (n / total)
        self.m2 = self.m2 + m2 + delta.square() * (self.count * n / total)
        self.count = total

    def result(self, dtype: torch.dtype) -> Tuple[Tensor, Tensor]:
        return self.mean.to(dtype), (self.m2 / self.count).to(dtype)


def _autocast_state(device_type: str):
    if is_autocast_enabled(device_type):
        return True, get_autocast_dtype(device_type)
    return False, None


class ChunkedRefinerFunction(torch.autograd.Function):
    """``(refine(A) @ v)`` of a refiner block, in chunks of query rows."""

    @staticmethod
    def forward(ctx, spec: RefinementSpec, chunk_rows: int, attn: Tensor,
                value: Tensor, *params: Tensor) -> Tensor:
        weights, affine = params[:3], params[3:]
        B, _, N, _ = attn.shape
        stats = []
        for k, norm in enumerate(spec.norms):
            if not norm.batch_stats:
                stats.append(
                    (norm.module.running_mean, norm.module.running_var))
                continue
            moments = _MomentAccumulator()
            for start, end in _chunks(N, chunk_rows):
                lo, hi = _halo(start, end, N)
                moments.add(
                    _refine_rows(spec, attn[:, :, lo:hi], start - lo, hi - end,
                                 weights, affine, stats, k))
            stats.append(moments.result(attn.dtype))
            norm.update_running_stats(*stats[-1], moments.count)
        out = value.new_empty(value.shape)
        for start, end in _chunks(N, chunk_rows):
            lo, hi = _halo(start, end, N)
            refined = _refine_rows(spec, attn[:, :,
                                              lo:hi], start - lo, hi - end,
                                   weights, affine, stats, NUM_MAP_NORMS)
            out[:, :, start:end] = refined.to(value.dtype) @ value
        ctx.spec, ctx.chunk_rows = spec, chunk_rows
        ctx.num_params = len(params)
        ctx.autocast = _autocast_state(attn.device.type)
        ctx.save_for_backward(attn, value, *params,
                              *[t for pair in stats for t in pair])
        return out

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        grads = _RefinerBackward(ctx)
        grads.output_pass(grad_out)
        # Norm k's input depends on the statistics of the norms before it,
        # so their gradients are complete once the later norms' passes ran.
        for k in reversed(range(NUM_MAP_NORMS)):
            if ctx.spec.norms[k].batch_stats:
                grads.statistics_pass(k)
        return (None, None, grads.grad_attn, grads.value.grad,
                *grads.param_grads())


class _RefinerBackward:
    """The backward passes of :class:`ChunkedRefinerFunction`.

    Gradients are summed into the ``.grad`` of leaves: the parameters, the
    values and the batch statistics (held as inputs by the output pass; their
    gradient is then carried back through the chunks that produced them),
    and into ``grad_attn`` for the map.
    """

    def __init__(self, ctx):
        """Leaves for what forward saved, and a zero gradient of the map."""
        self.spec, self.chunk_rows = ctx.spec, ctx.chunk_rows
        saved = ctx.saved_tensors
        self.attn, value = saved[:2]
        params = saved[2:2 + ctx.num_params]
        self.autocast = ctx.autocast
        self.leaves = [
            p.detach().requires_grad_(need) if p is not None else None
            for p, need in zip(params, ctx.needs_input_grad[4:])
        ]
        self.value = value.detach().requires_grad_(ctx.needs_input_grad[3])
        self.stats = self._stats_leaves(saved[2 + ctx.num_params:])
        self.grad_attn = (
            torch.zeros_like(self.attn) if ctx.needs_input_grad[2] else None)

    def _stats_leaves(
            self, flat_stats: Sequence[Tensor]) -> List[Tuple[Tensor, Tensor]]:
        """(mean, var) of each norm; leaves where they are batch statistics."""
        stats = []
        for k, norm in enumerate(self.spec.norms):
            mean, var = flat_stats[2 * k], flat_stats[2 * k + 1]
            if norm.batch_stats:
                mean = mean.detach().requires_grad_()
                var = var.detach().requires_grad_()
            stats.append((mean, var))
        return stats

    def _chunk_pass(self, stage: int, chunk_loss: Callable) -> None:
        """Sum each chunk's gradients of ``chunk_loss`` at ``stage``."""
        # stage k < 4: the rows entering norm k; 4: the refined rows.
        attn, N = self.attn, self.attn.shape[2]
        weights, affine = self.leaves[:3], self.leaves[3:]
        enabled, dtype = self.autocast
        for start, end in _chunks(N, self.chunk_rows):
            lo, hi = _halo(start, end, N)
            a_in = attn[:, :, lo:hi].detach().requires_grad_(
                self.grad_attn is not None)
            with torch.enable_grad(), torch.autocast(
                    attn.device.type, dtype=dtype, enabled=enabled):
                y = _refine_rows(self.spec, a_in, start - lo, hi - end,
                                 weights, affine, self.stats, stage)
                loss = chunk_loss(y, start, end)
            inputs = [
                t for t in (a_in, self.value, *self.leaves,
                            *(s for pair in self.stats for s in pair))
                if t is not None and t.requires_grad
            ]
            if not inputs or not loss.requires_grad:
                continue
            grads = torch.autograd.grad(loss, inputs, allow_unused=True)
            for t, g in zip(inputs, grads):
                if g is None:
                    continue
                if t is a_in:
                    self.grad_attn[:, :, lo:hi] += g
                elif t.grad is None:
                    t.grad = g
                else:
                    t.grad += g

    def output_pass(self, grad_out: Tensor) -> None:
        """Gradients of ``sum(out * grad_out)``, batch statistics held."""

        def output_loss(refined, start, end):
            out = refined.to(self.value.dtype) @ self.value
            return (out * grad_out[:, :, start:end]).sum()

        self._chunk_pass(NUM_MAP_NORMS, output_loss)

    def statistics_pass(self, k: int) -> None:
        """Carry norm ``k``'s statistics' gradients back to their input."""
        mean, var = self.stats[k]
        grad_mean = (
            mean.grad if mean.grad is not None else torch.zeros_like(mean))
        grad_var = var.grad if var.grad is not None else torch.zeros_like(var)
        count = self.attn.shape[0] * self.attn.shape[2]**2

        def stats_loss(x, start, end):
            # d mean / dx = 1 / n and d var / dx = 2 (x - mean) / n.
            centred = x - mean.detach().view(1, -1, 1, 1)
            return ((grad_mean * x.sum(
                (0, 2, 3))).sum() + (grad_var * centred.square().sum(
                    (0, 2, 3))).sum()) / count

        self._chunk_pass(k, stats_loss)

    def param_grads(self) -> List[Optional[Tensor]]:
        """The summed gradients of the parameters (None where not needed)."""
        return [
            leaf.grad if leaf is not None else None for leaf in self.leaves
        ]


def chunked_refiner_attention(spec: RefinementSpec, attn: Tensor,
                              value: Tensor, chunk_rows: int) -> Tensor:
    """``refine(attn) @ value`` computed in chunks of ``chunk_rows`` query
    rows; see the module docstring. ``attn`` is (B, heads, N, N), ``value``
    (B, heads, N, d); returns (B, heads, N, d)."""
    return ChunkedRefinerFunction.apply(spec, chunk_rows, attn, value,
                                        *spec.weights, *spec.affine_params())


class ChunkedChainedAttentionFunction(torch.autograd.Function):
    """An attention block's map ``softmax(q k^T) + scale * prev`` and
    ``map @ v``, in chunks of query rows."""

    @staticmethod
    def forward(ctx, scale: float, chunk_rows: int, query: Tensor, key: Tensor,
                value: Tensor,
                prev_attn: Optional[Tensor]) -> Tuple[Tensor, Tensor]:
        B, H, N, _ = query.shape
        root_scale = math.sqrt(scale)
        key_scaled = key * root_scale
        attn = None
        out = value.new_empty(value.shape)
        for start, end in _chunks(N, chunk_rows):
            rows = ((query[:, :, start:end] * root_scale)
                    @ key_scaled.transpose(-2, -1)).softmax(dim=-1)
            if prev_attn is not None:
                rows = rows + prev_attn[:, :, start:end] * scale
            if attn is None:
                attn = rows.new_empty(B, H, N, N)
            attn[:, :, start:end] = rows
            out[:, :, start:end] = rows.to(value.dtype) @ value
        ctx.scale, ctx.chunk_rows = scale, chunk_rows
        ctx.has_prev = prev_attn is not None
        ctx.autocast = _autocast_state(query.device.type)
        ctx.save_for_backward(query, key, value, attn)
        return out, attn

    @staticmethod
    def backward(ctx, grad_out: Tensor, grad_attn: Optional[Tensor]):
        query, key, value, attn = ctx.saved_tensors
        scale, N = ctx.scale, query.shape[2]
        root_scale = math.sqrt(scale)
        enabled, dtype = ctx.autocast
        grad_query = torch.zeros_like(query)
        grad_key = torch.zeros_like(key)
        grad_value = torch.zeros_like(value)
        grad_prev = torch.empty_like(attn) if ctx.has_prev else None
        with torch.autocast(query.device.type, dtype=dtype, enabled=enabled):
            key_scaled = key * root_scale
            for start, end in _chunks(N, ctx.chunk_rows):
                rows = attn[:, :, start:end]
                grad_rows = grad_out[:, :, start:end] @ value.transpose(
                    -2, -1).to(grad_out.dtype)
                if grad_attn is not None:
                    grad_rows = grad_rows + grad_attn[:, :, start:end]
                grad_value += (rows.transpose(-2, -1).to(grad_out.dtype)
                               @ grad_out[:, :, start:end]).to(value.dtype)
                if grad_prev is not None:
                    grad_prev[:, :, start:end] = grad_rows * scale
                # The softmax rows again, from q and k.
                probs = ((query[:, :, start:end] * root_scale)
                         @ key_scaled.transpose(-2, -1)).softmax(dim=-1)
                grad_logits = probs * (
                    grad_rows - (grad_rows * probs).sum(-1, keepdim=True))
                grad_query[:, :, start:end] = (grad_logits.to(
                    key.dtype) @ key_scaled).to(query.dtype) * root_scale
                grad_key += ((grad_logits.transpose(-2, -1).to(query.dtype)
                              @ query[:, :, start:end]) * scale).to(key.dtype)
        return None, None, grad_query, grad_key, grad_value, grad_prev


def chunked_chained_attention(query: Tensor, key: Tensor, value: Tensor,
                              prev_attn: Optional[Tensor], scale: float,
                              chunk_rows: int) -> Tuple[Tensor, Tensor]:
    """``A = softmax(q k^T * scale) + scale * prev_attn`` and ``A @ v`` in
    chunks of ``chunk_rows`` query rows. Returns ``(A @ v, A)``."""
    return ChunkedChainedAttentionFunction.apply(scale, chunk_rows, query, key,
                                                 value, prev_attn)
