# Copyright (c) mmscalable contributors. All rights reserved.
"""Tests of the fused refined attention op (``mmscalable.ops.
refined_attention``): the compiled CPU kernel against the reference in every
dtype, its gradients, the edge rule of the hidden map, its registration
with torch.library (fake tensors, autograd, torch.compile, torch.export),
bad input, and the CUDA kernel where a GPU is present."""
import pytest
import torch
import torch.nn.functional as F

from ext_marks import requires_cuda_ext, requires_ext
from mmscalable.ops import (has_fused_kernel, refined_attention,
                            refined_attention_reference)

# (B, heads, N, d, expand): one token, a map smaller than the 3x3 kernel,
# maps of one and of several row tiles (32 rows), wide values.
SHAPES = [
    (1, 2, 1, 3, 3),
    (2, 3, 2, 5, 3),
    (3, 2, 9, 4, 2),
    (2, 4, 33, 8, 3),
    (1, 3, 70, 16, 3),
]


def _inputs(B, H, N, d, expand, dtype=torch.float64, device='cpu', seed=0):
    gen = torch.Generator().manual_seed(seed)
    E = H * expand

    def rand(*shape, scale=1.):
        return (torch.randn(*shape, generator=gen, dtype=torch.float64) *
                scale).to(device)

    # Maps as an attention block passes them on: softmax rows plus a
    # scaled previous map, here up to a few units so that relu6 clips on
    # both sides.
    attn = rand(B, H, N, N, scale=3.)
    value = rand(B, H, N, d)
    params = [
        rand(E, H, scale=.7),
        rand(E, scale=.7),
        rand(E, 3, 3, scale=.7),
        rand(E, scale=.7),
        rand(H, E, scale=.4),
        rand(H, scale=.2),
        rand(H)
    ]
    param_dtype = torch.float64 if dtype == torch.float64 else torch.float32
    return (attn.to(dtype), value.to(dtype),
            *[p.to(param_dtype) for p in params])


def _reference64(*args):
    return refined_attention_reference(*[a.double() for a in args])


@requires_ext
@pytest.mark.parametrize('shape', SHAPES)
@pytest.mark.parametrize('dtype,tol', [(torch.float64, 1e-12),
                                       (torch.float32, 2e-5),
                                       (torch.bfloat16, 2e-2),
                                       (torch.float16, 2e-3)])
def test_cpu_kernel_matches_reference(shape, dtype, tol):
    args = _inputs(*shape, dtype=dtype)
    assert has_fused_kernel(args[0])
    out = refined_attention(*args)
    assert out.dtype == dtype and out.shape == args[1].shape
    expected = _reference64(*args)
    scale = expected.abs().max().item() + 1
    torch.testing.assert_close(
        out.double(), expected, rtol=tol, atol=tol * scale)


@requires_ext
@pytest.mark.parametrize('shape', SHAPES)
def test_cpu_gradients_match_reference(shape):
    args = [a.requires_grad_() for a in _inputs(*shape)]
    grad_out = torch.randn_like(args[1])
    fused = torch.autograd.grad((refined_attention(*args) * grad_out).sum(),
                                args)
    expected = torch.autograd.grad(
        (refined_attention_reference(*args) * grad_out).sum(), args)
    for got, want in zip(fused, expected):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


@requires_ext
@pytest.mark.parametrize('shape', [(1, 2, 4, 3, 2), (2, 1, 5, 2, 3)])
def test_gradcheck(shape):
    # Small values keep finite differences away from relu6's kinks.
    args = [(a * 0.3).detach().requires_grad_() for a in _inputs(*shape)]
    assert torch.autograd.gradcheck(refined_attention, args)


@requires_ext
def test_hidden_map_is_zero_padded_not_the_hidden_map_of_zero():
    # A large first bias: relu6(b) > 0 is the hidden value of A = 0, which
    # must not be used beyond the map's edges.
    args = list(_inputs(1, 2, 6, 3, 3))
    args[3] = torch.full_like(args[3], 2.)
    out = refined_attention(*args)
    torch.testing.assert_close(out, refined_attention_reference(*args))
    attn, value, w1, b1, wd, bd, w3, b3, alpha = args
    padded = F.pad(attn, (1, 1, 1, 1))
    hidden = F.relu6(F.conv2d(padded, w1[:, :, None, None], b1))
    hidden = F.relu6(F.conv2d(hidden, wd[:, None], bd, groups=wd.shape[0]))
    wrong = (F.conv2d(hidden, w3[:, :, None, None], b3) +
             alpha.view(1, -1, 1, 1) * attn) @ value
    assert (out - wrong).abs().max() > 1e-3


@requires_ext
def test_registered_op_passes_opcheck():
    args = _inputs(2, 3, 5, 4, 2, dtype=torch.float32)
    torch.library.opcheck(
        torch.ops.mmscalable.refined_attention_forward.default,
        [a.requires_grad_() for a in args])


class _Refine(torch.nn.Module):

    def __init__(self, params):
        super().__init__()
        self.params = torch.nn.ParameterList(params)

    def forward(self, attn, value):
        return refined_attention(attn, value, *self.params)


@requires_ext
def test_export_and_compile_keep_one_op():
    attn, value, *params = _inputs(1, 2, 7, 4, 3, dtype=torch.float32)
    module = _Refine(params)
    exported = torch.export.export(module, (attn, value))
    targets = {str(node.target) for node in exported.graph.nodes}
    assert 'mmscalable.refined_attention_forward.default' in targets
    assert not any('convolution' in t for t in targets)
    fresh = torch.rand_like(attn)
    with torch.no_grad():
        torch.testing.assert_close(exported.module()(fresh, value),
                                   module(fresh, value))
    compiled = torch.compile(module, fullgraph=True, backend='aot_eager')
    torch.testing.assert_close(compiled(fresh, value), module(fresh, value))


def test_disabled_extension_runs_the_reference(monkeypatch):
    monkeypatch.setenv('MMSCALABLE_DISABLE_EXT', '1')
    args = _inputs(1, 2, 5, 3, 2)
    assert not has_fused_kernel(args[0])
    torch.testing.assert_close(
        refined_attention(*args), refined_attention_reference(*args))


@requires_ext
@pytest.mark.parametrize('change,message', [
    (lambda a: a.__setitem__(0, a[0][..., :-1]), 'attn must be'),
    (lambda a: a.__setitem__(1, a[1][:, :1]), 'value must be'),
    (lambda a: a.__setitem__(4, a[4][:, :2]), 'w_depthwise must have shape'),
    (lambda a: a.__setitem__(8, a[8].double()), 'alpha must be'),
])
def test_bad_input_names_the_problem(change, message):
    args = list(_inputs(1, 2, 5, 3, 2, dtype=torch.float32))
    change(args)
    with pytest.raises(RuntimeError, match=message):
        torch.ops.mmscalable.refined_attention_forward(*args)


@requires_cuda_ext
@pytest.mark.parametrize('shape', SHAPES + [(2, 12, 197, 32, 3)])
@pytest.mark.parametrize('dtype,tol', [(torch.float32, 1e-4),
                                       (torch.bfloat16, 3e-2),
                                       (torch.float16, 3e-3)])
def test_cuda_kernel_matches_reference(shape, dtype, tol):
    args = _inputs(*shape, dtype=dtype, device='cuda')
    out = refined_attention(*args)
    expected = _reference64(*args)
    scale = expected.abs().max().item() + 1
    torch.testing.assert_close(
        out.double(), expected, rtol=tol, atol=tol * scale)


@requires_cuda_ext
@pytest.mark.parametrize('shape', SHAPES + [(2, 12, 197, 32, 3)])
def test_cuda_gradients_match_cpu(shape):
    cpu_args = [a.requires_grad_() for a in _inputs(*shape)]
    cuda_args = [
        a.detach().cuda().requires_grad_() for a in _inputs(*shape)
    ]
    grad_out = torch.randn_like(cpu_args[1])
    cpu = torch.autograd.grad(
        (refined_attention(*cpu_args) * grad_out).sum(), cpu_args)
    cuda = torch.autograd.grad(
        (refined_attention(*cuda_args) * grad_out.cuda()).sum(), cuda_args)
    for got, want in zip(cuda, cpu):
        torch.testing.assert_close(got.cpu(), want, rtol=1e-9, atol=1e-9)
