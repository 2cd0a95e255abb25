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

from .ext_loader import ext_for

OP_NAMESPACE = 'mmscalable'
FORWARD_OP = f'{OP_NAMESPACE}::refined_attention_forward'
BACKWARD_OP = f'{OP_NAMESPACE}::refined_attention_backward'

# The dtypes of A and V the kernels are instantiated for.
_KERNEL_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)

_registered = False


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


def _register_fake_and_autograd() -> None:
    """Fake implementations and the autograd formula of the compiled ops."""
    global _registered
    if _registered:
        return

    @torch.library.register_fake(FORWARD_OP)
    def _forward_fake(attn, value, *params):
        return value.new_empty(value.shape)

    @torch.library.register_fake(BACKWARD_OP)
    def _backward_fake(grad_out, attn, value, *params):
        return (attn.new_empty(attn.shape), value.new_empty(value.shape),
                *(p.new_empty(p.shape) for p in params))

    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(*inputs)

    def backward(ctx, grad_out):
        return tuple(
            torch.ops.mmscalable.refined_attention_backward(
                grad_out, *ctx.saved_tensors))

    torch.library.register_autograd(
        FORWARD_OP, backward, setup_context=setup_context)
    _registered = True


def has_fused_kernel(attn: Tensor) -> bool:
    """Whether the compiled op covers maps like ``attn`` (its device and
    dtype, the extension loaded and not disabled).

    ``torch.compile`` and ``torch.export`` keep the op as one node. ONNX
    export (and ``torch.jit.trace``, which the TorchScript exporter uses)
    traces the reference instead: ONNX has no such operator.
    """
    if ext_for(attn, _KERNEL_DTYPES) is None:
        return False
    _register_fake_and_autograd()
    return True


def refined_attention(attn: Tensor, value: Tensor, w_expand: Tensor,
                      b_expand: Tensor, w_depthwise: Tensor,
                      b_depthwise: Tensor, w_reduce: Tensor, b_reduce: Tensor,
                      alpha: Tensor) -> Tensor:
    """``M @ value`` (see the module docstring) with the compiled op where
    :func:`has_fused_kernel`, else with
    :func:`refined_attention_reference`.

    Arguments as :func:`refined_attention_reference`. For the compiled op,
    V is cast to A's dtype and the parameters to :func:`param_dtype` of it.

    Returns:
        Tensor: (B, heads, N, d), of V's dtype.
    """
    if not has_fused_kernel(attn):
        return refined_attention_reference(attn, value, w_expand, b_expand,
                                           w_depthwise, b_depthwise,
                                           w_reduce, b_reduce, alpha)
    dtype = param_dtype(attn.dtype)
    params = [
        p.to(dtype) for p in (w_expand, b_expand, w_depthwise, b_depthwise,
                              w_reduce, b_reduce, alpha)
    ]
    out = torch.ops.mmscalable.refined_attention_forward(
        attn, value.to(attn.dtype), *params)
    return out.to(value.dtype)
