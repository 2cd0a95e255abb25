# Copyright (c) mmscalable contributors. All rights reserved.
"""Fused refined attention of Refiner-ViT, with frozen norms.

A refiner block of Refiner-ViT multiplies its values with the refined map

    M = scale * BN4(A + BN3(W_reduce * relu6(BN2(W_dw * relu6(BN1(W_expand * A)))))),

where A is the (B, heads, N, N) attention map, the 1x1 convs mix heads and
the 3x3 depthwise conv runs over each N x N map as an image. With frozen
norms (``norm_eval=True`` or ``model.eval()``) every norm is an affine map
that folds into the conv before it, which leaves seven small tensors
(:func:`refined_attention_reference` names them). The compiled op computes
``M @ V`` from them in tiles of query rows and never forms the expanded
(B, 3 * heads, N, N) maps: memory stays that of A and V, at any image size.
Its backward recomputes the tiles and returns the gradients of A, V and the
seven tensors, which autograd carries on to the convs and norms they were
folded from.

The op is registered with ``torch.library`` (``mmscalable::
refined_attention_forward`` and ``..._backward``), with fake implementations
so that ``torch.compile`` and ``torch.export`` keep it as one op. Without
the compiled extension the reference below runs instead.
"""
import torch
import torch.nn.functional as F
from torch import Tensor

from .ext_loader import OP_NAMESPACE, has_compiled_kernel, register_op

FORWARD_OP = f'{OP_NAMESPACE}::refined_attention_forward'
BACKWARD_OP = f'{OP_NAMESPACE}::refined_attention_backward'


def param_dtype(map_dtype: torch.dtype) -> torch.dtype:
    """The dtype of the folded parameters for maps of ``map_dtype``: the
    kernels' accumulation type (float64 for float64 maps, else float32)."""
    return torch.float64 if map_dtype == torch.float64 else torch.float32


def refined_attention_reference(attn: Tensor, value: Tensor, w_expand: Tensor,
                                b_expand: Tensor, w_depthwise: Tensor,
                                b_depthwise: Tensor, w_reduce: Tensor,
                                b_reduce: Tensor, alpha: Tensor) -> Tensor:
    """``M @ value`` with every map in memory, in plain PyTorch.

    Args:
        attn (Tensor): Attention maps A, (B, heads, N, N).
        value (Tensor): Values V, (B, heads, N, d), of A's dtype.
        w_expand (Tensor): The 1x1 expansion with its norm folded in,
            (E, heads).
        b_expand (Tensor): Its bias, (E, ).
        w_depthwise (Tensor): The depthwise 3x3 kernels with their norm
            folded in, (E, 3, 3).
        b_depthwise (Tensor): Their bias, (E, ).
        w_reduce (Tensor): The 1x1 reduction with the last two norms and
            the block's scale folded in, (heads, E).
        b_reduce (Tensor): Its bias, (heads, ).
        alpha (Tensor): The factor of A in ``M``, (heads, ).

    Returns:
        Tensor: (B, heads, N, d), of V's dtype.
    """
    dtype = attn.dtype
    hidden = w_expand.shape[0]
    hidden_map = F.relu6(
        F.conv2d(attn, w_expand.to(dtype)[:, :, None, None],
                 b_expand.to(dtype)))
    # conv2d pads the hidden map itself with zeros, as the model does.
    hidden_map = F.relu6(
        F.conv2d(
            hidden_map,
            w_depthwise.to(dtype)[:, None],
            b_depthwise.to(dtype),
            padding=1,
            groups=hidden))
    refined = F.conv2d(hidden_map, w_reduce.to(dtype)[:, :, None, None],
                       b_reduce.to(dtype))
    refined = refined + alpha.to(dtype).view(1, -1, 1, 1) * attn
    return refined.to(value.dtype) @ value


def _forward_fake(attn, value, *params):
    return value.new_empty(value.shape)


def _backward_fake(grad_out, attn, value, *params):
    return (attn.new_empty(attn.shape), value.new_empty(value.shape),
            *(p.new_empty(p.shape) for p in params))


def _setup_context(ctx, inputs, output):
    ctx.save_for_backward(*inputs)


def _backward(ctx, grad_out):
    return tuple(
        torch.ops.mmscalable.refined_attention_backward(
            grad_out, *ctx.saved_tensors))


register_op(
    FORWARD_OP,
    _forward_fake,
    backward=_backward,
    setup_context=_setup_context)
register_op(BACKWARD_OP, _backward_fake)


# Shared memory per block a kernel may use without opting in: the fallback
# where torch does not report the opt-in maximum.
_DEFAULT_SHARED_MEMORY = 48 * 1024


def fused_kernel_applies(attn: Tensor, hidden: int, dims: int,
                         needs_grad: bool) -> bool:
    """Whether the compiled op computes maps like ``attn``: the one rule
    that :func:`refined_attention` and Refiner-ViT's blocks follow.

    The op must have a kernel for the maps' device and dtype
    (:func:`~mmscalable.ops.has_compiled_kernel`). On CUDA its kernels must
    also take the maps: at most 32 heads, and their smallest tile within
    the device's shared memory per block (the kernels' own launch planning,
    ``torch.ops.mmscalable.refined_attention_cuda_kernels_fit``); and where
    gradients are needed, deterministic algorithms must be off (the
    parameters' gradients are sums of float atomics, whose order varies).

    Args:
        attn (Tensor): The maps, (B, heads, N, N).
        hidden (int): The expanded channels E of the refinement.
        dims (int): The values' channels per head d.
        needs_grad (bool): Whether a backward will run.

    Returns:
        bool: False where the reference (or the model's chunked path) must
        compute the call.
    """
    if not has_compiled_kernel(attn):
        return False
    if attn.device.type != 'cuda':
        return True
    if needs_grad and torch.are_deterministic_algorithms_enabled():
        return False
    props = torch.cuda.get_device_properties(attn.device)
    shared = getattr(props, 'shared_memory_per_block_optin',
                     _DEFAULT_SHARED_MEMORY)
    element_size = 8 if attn.dtype == torch.float64 else 4
    return torch.ops.mmscalable.refined_attention_cuda_kernels_fit(
        attn.shape[1], hidden, dims, element_size, shared)


def fused_refined_attention(attn: Tensor, value: Tensor, w_expand: Tensor,
                            b_expand: Tensor, w_depthwise: Tensor,
                            b_depthwise: Tensor, w_reduce: Tensor,
                            b_reduce: Tensor, alpha: Tensor) -> Tensor:
    """``M @ value`` by the compiled op, for a caller that has checked
    :func:`fused_kernel_applies` (as Refiner-ViT's blocks do, which also
    record the path they took); :func:`refined_attention` checks it itself.

    Arguments as :func:`refined_attention_reference`. V is cast to A's dtype
    and the parameters to :func:`param_dtype` of it.

    Returns:
        Tensor: (B, heads, N, d), of V's dtype.
    """
    dtype = param_dtype(attn.dtype)
    params = (w_expand, b_expand, w_depthwise, b_depthwise, w_reduce,
              b_reduce, alpha)
    out = torch.ops.mmscalable.refined_attention_forward(
        attn, value.to(attn.dtype), *[p.to(dtype) for p in params])
    return out.to(value.dtype)


def refined_attention(attn: Tensor, value: Tensor, w_expand: Tensor,
                      b_expand: Tensor, w_depthwise: Tensor,
                      b_depthwise: Tensor, w_reduce: Tensor, b_reduce: Tensor,
                      alpha: Tensor) -> Tensor:
    """``M @ value`` (see the module docstring) with the compiled op where
    :func:`fused_kernel_applies`, else with
    :func:`refined_attention_reference`.

    Arguments as :func:`refined_attention_reference`.

    Returns:
        Tensor: (B, heads, N, d), of V's dtype.
    """
    args = (attn, value, w_expand, b_expand, w_depthwise, b_depthwise,
            w_reduce, b_reduce, alpha)
    needs_grad = torch.is_grad_enabled() and any(t.requires_grad
                                                 for t in args)
    if fused_kernel_applies(attn, w_expand.shape[0], value.shape[-1],
                            needs_grad):
        return fused_refined_attention(*args)
    return refined_attention_reference(*args)
