# Copyright (c) mmscalable contributors. All rights reserved.
"""Tests of the fused refined attention op (``mmscalable.ops.
refined_attention``): the compiled CPU kernel against the reference in every
dtype, its gradients, the edge rule of the hidden map, its registration
with torch.library (fake tensors, autograd, torch.compile, torch.export),
bad input, and the CUDA kernel where a GPU is present."""
import pytest
import torch
import torch.nn.functional as F

from ext_marks import (requires_cuda_ext, requires_ext,
                       requires_fake_kernels)
from op_cases import refined_attention_inputs as _inputs
from mmscalable.ops import (has_compiled_kernel, refined_attention,
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
    assert has_compiled_kernel(args[0])
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
@requires_fake_kernels
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
@requires_fake_kernels
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
    assert not has_compiled_kernel(args[0])
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


@requires_ext
def test_backward_checks_grad_out():
    """grad_out of another shape or dtype than the output is refused, not
    cast or misread."""
    args = _inputs(1, 2, 5, 3, 2, dtype=torch.float32)
    grad_out = torch.ones_like(args[1])
    backward = torch.ops.mmscalable.refined_attention_backward
    with pytest.raises(RuntimeError, match="grad_out must have the output's "
                       'shape'):
        backward(grad_out[..., :-1], *args)
    with pytest.raises(RuntimeError, match="grad_out must have the output's "
                       'dtype'):
        backward(grad_out.double(), *args)


@requires_cuda_ext
def test_cuda_backward_refuses_grad_out_on_another_device():
    args = _inputs(1, 2, 5, 3, 2, dtype=torch.float32, device='cuda')
    with pytest.raises(RuntimeError, match='grad_out is on cpu'):
        torch.ops.mmscalable.refined_attention_backward(
            torch.ones(args[1].shape), *args)


@requires_cuda_ext
def test_cuda_kernels_from_two_host_threads():
    """Launches of different sizes from two host threads at once (each
    kernel's shared-memory limit is set once per device, not per call)."""
    from concurrent.futures import ThreadPoolExecutor
    cases = [_inputs(2, 6, n, 32, 3, dtype=torch.float32, device='cuda')
             for n in (9, 197)]
    expected = [_reference64(*args) for args in cases]

    def run(index):
        args = cases[index % 2]
        with torch.cuda.stream(torch.cuda.Stream()):
            out = refined_attention(*args)
        torch.cuda.synchronize()
        return index % 2, out

    with ThreadPoolExecutor(2) as pool:
        for which, out in pool.map(run, range(16)):
            scale = expected[which].abs().max().item() + 1
            torch.testing.assert_close(
                out.double(), expected[which], rtol=0, atol=1e-4 * scale)


@requires_cuda_ext
@pytest.mark.parametrize('shape', SHAPES + [(2, 12, 197, 32, 3)])
@pytest.mark.parametrize('dtype,tol', [(torch.float64, 1e-12),
                                       (torch.float32, 1e-4),
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


# --------------------------------------------------------------------------
# CUDA: gradients in every dtype, empty batches, routing, other devices
# --------------------------------------------------------------------------

PARAM_NAMES = ('attn', 'value', 'w_expand', 'b_expand', 'w_depthwise',
               'b_depthwise', 'w_reduce', 'b_reduce', 'alpha')
EPS32 = torch.finfo(torch.float32).eps


def _on_grid(args):
    """``args`` (as :func:`_inputs` returns them) with A and the kernels of
    the expansion and the depthwise conv in steps of 1/8 (|A| <= 12, kernels
    within +-3), and their biases odd multiples of 1/128 and 1/2048 (within
    +-3).

    Every pre-activation of the two ReLU6 is then a sum of products on a
    grid that float32 adds without rounding (for up to 64 heads: |z1| <
    2^12 in steps of 2^-7, |z2| < 2^8 in steps of 2^-11, both under 2^24
    steps) and an odd multiple of its step, so never at a kink (0 or 6).
    The kernels, which compute in float32, then take every ReLU6 on the same
    side as the float64 reference, and their gradients differ from its by
    rounding only, not by a derivative of ReLU6 flipped by it. The values
    are exact in bfloat16 and float16 too.
    """
    attn, value, w1, b1, wd, bd, *rest = args

    def snap(t, step, limit, odd=False):
        x = t.double().clamp(-limit, limit)
        x = ((2 * torch.floor(x / (2 * step)) + 1) * step if odd else
             torch.round(x / step) * step)
        return x.to(t.dtype)

    return [
        snap(attn, 1 / 8, 12), value,
        snap(w1, 1 / 8, 3),
        snap(b1, 1 / 128, 3, odd=True),
        snap(wd, 1 / 8, 3),
        snap(bd, 1 / 2048, 3, odd=True), *rest
    ]


def _grad_like(t, seed=1):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(t.shape, generator=gen,
                       dtype=torch.float64).to(t.device, t.dtype)


def _grads(fn, args, grad_out):
    """Gradients of ``fn(*args)`` with respect to every argument."""
    leaves = [a.detach().requires_grad_() for a in args]
    return torch.autograd.grad(fn(*leaves), leaves, grad_out)


def _rounding_tolerance(dtype, length):
    """``(rtol, atol)`` of a result of ``dtype`` that the kernels sum in
    float32 over at most ``length`` terms, against float64 on the same
    inputs; ``atol`` is relative to the result's largest magnitude.

    A float32 sum of n terms of either sign is off by about
    eps(float32) * sqrt(n) of the largest values it yields (a factor 16
    leaves room for the order the kernels sum in: per thread, per tile,
    then atomics). A result stored in a narrower dtype is rounded once
    more, by at most half its eps: rtol is that eps, twice as much.
    """
    return torch.finfo(dtype).eps, 16 * EPS32 * length**0.5


def _sum_length(shape):
    """The most terms behind one gradient of a case of :data:`SHAPES`: the
    parameters' gradients sum over the B * N * N map positions, A's runs
    through sums over d, the heads, the 9 taps and the hidden maps."""
    B, H, N, d, expand = shape
    return B * N * N + d + H + 9 + H * expand


def _assert_grads_close(got, want, args, length):
    """Gradients ``got`` (of ``args``' dtypes and device) against the
    float64 ``want``, within :func:`_rounding_tolerance`."""
    for name, g, w, arg in zip(PARAM_NAMES, got, want, args):
        assert g.shape == arg.shape and g.dtype == arg.dtype, name
        assert g.device == arg.device, name
        rtol, atol = _rounding_tolerance(arg.dtype, length)
        torch.testing.assert_close(
            g.double().cpu(), w.double().cpu(), rtol=rtol,
            atol=atol * w.abs().max().item(),
            msg=lambda m, name=name: f'gradient of {name}: {m}')


@requires_cuda_ext
@pytest.mark.parametrize('shape', SHAPES + [(2, 12, 197, 32, 3)])
@pytest.mark.parametrize('dtype',
                         [torch.float32, torch.bfloat16, torch.float16])
def test_cuda_gradients_match_reference(shape, dtype):
    # The gradients of A, V and the 7 folded parameters against autograd
    # through the reference in float64 on the same (rounded) inputs.
    args = _on_grid(_inputs(*shape, dtype=dtype, device='cuda'))
    grad_out = _grad_like(args[1])
    got = _grads(refined_attention, args, grad_out)
    want = _grads(refined_attention_reference, [a.double() for a in args],
                  grad_out.double())
    _assert_grads_close(got, want, args, _sum_length(shape))


@requires_cuda_ext
@pytest.mark.parametrize('dtype', [torch.float32, torch.bfloat16])
def test_cuda_empty_batch(dtype):
    args = _inputs(0, 3, 5, 4, 2, dtype=dtype, device='cuda')
    out = torch.ops.mmscalable.refined_attention_forward(*args)
    assert out.shape == (0, 3, 5, 4) and out.device == args[0].device
    grads = torch.ops.mmscalable.refined_attention_backward(
        torch.empty_like(out), *args)
    for grad, arg in zip(grads, args):
        assert grad.shape == arg.shape and grad.dtype == arg.dtype
    # No map position: the parameters' gradients are zero.
    for grad in grads[2:]:
        assert torch.equal(grad, torch.zeros_like(grad))
    # Through the public function and autograd.
    got = _grads(refined_attention, args, torch.empty_like(out))
    for grad, arg in zip(got, args):
        assert torch.equal(grad, torch.zeros_like(arg))


@requires_cuda_ext
def test_cuda_more_heads_than_the_kernel_holds():
    # The CUDA kernels take at most 32 heads (their per-head sums live in
    # registers); the public function computes more without them.
    args = _on_grid(_inputs(1, 40, 6, 4, 1, dtype=torch.float32,
                            device='cuda'))
    with pytest.raises(RuntimeError, match='heads'):
        torch.ops.mmscalable.refined_attention_forward(*args)
    torch.testing.assert_close(
        refined_attention(*args), refined_attention_reference(*args))
    grad_out = _grad_like(args[1])
    for got, want in zip(
            _grads(refined_attention, args, grad_out),
            _grads(refined_attention_reference, args, grad_out)):
        torch.testing.assert_close(got, want)


@pytest.fixture
def deterministic_algorithms(monkeypatch):
    """``torch.use_deterministic_algorithms(True)`` for the test, the
    previous setting after it; cuBLAS (the reference's product) needs a
    fixed workspace then."""
    monkeypatch.setenv('CUBLAS_WORKSPACE_CONFIG', ':4096:8')
    enabled = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(enabled, warn_only=warn_only)


@requires_cuda_ext
def test_cuda_deterministic_mode(deterministic_algorithms):
    # The backward kernel adds the parameters' gradients with atomics, in
    # no fixed order: it raises under deterministic algorithms, and the
    # public function gives its gradients another way.
    shape = (2, 3, 9, 4, 2)
    args = _on_grid(_inputs(*shape, dtype=torch.float32, device='cuda'))
    grad_out = _grad_like(args[1])
    with pytest.raises(RuntimeError,
                       match='does not have a deterministic implementation'):
        torch.ops.mmscalable.refined_attention_backward(grad_out, *args)
    got = _grads(refined_attention, args, grad_out)
    # The reference on the CPU, where deterministic algorithms change
    # nothing.
    want = _grads(refined_attention_reference,
                  [a.double().cpu() for a in args], grad_out.double().cpu())
    _assert_grads_close(got, want, args, _sum_length(shape))


@requires_cuda_ext
@pytest.mark.skipif(
    torch.cuda.device_count() < 2, reason='needs two CUDA devices')
def test_cuda_tensors_on_the_second_device():
    # Launches go to the tensors' device, not the current one (cuda:0).
    shape = (2, 4, 33, 8, 3)
    args = _inputs(*shape, device='cuda:1')
    grad_out = _grad_like(args[1])
    out = refined_attention(*args)
    assert out.device == torch.device('cuda:1')
    torch.testing.assert_close(
        out, refined_attention_reference(*args), rtol=1e-10, atol=1e-10)
    got = _grads(refined_attention, args, grad_out)
    want = _grads(refined_attention_reference, args, grad_out)
    for g, w in zip(got, want):
        assert g.device == torch.device('cuda:1')
        torch.testing.assert_close(g, w, rtol=1e-9, atol=1e-9)


class _CudaMaps:
    """Stands in for CUDA maps (B, heads, N, N) where no GPU is present:
    the routing rule reads only their device, dtype and shape."""

    def __init__(self, heads, dtype=torch.float32):
        self.shape = (2, heads, 196, 196)
        self.dtype = dtype
        self.device = torch.device('cuda', 0)


@requires_ext
def test_fused_kernel_rule_on_cuda(monkeypatch):
    """One rule routes CUDA maps: the CUDA kernels' own launch planning
    (heads, shared memory) and deterministic algorithms for a backward."""
    import importlib
    import types

    # The module (the package's attribute of that name is the function).
    module = importlib.import_module('mmscalable.ops.refined_attention')
    monkeypatch.setattr(module, 'has_compiled_kernel', lambda tensor: True)
    props = types.SimpleNamespace(shared_memory_per_block_optin=232448)
    monkeypatch.setattr(torch.cuda, 'get_device_properties',
                        lambda device: props)
    applies = module.fused_kernel_applies
    # Refiner-ViT-S's refiner blocks (6 heads, E = 18, d = 64).
    assert applies(_CudaMaps(6), 18, 64, needs_grad=True)
    assert applies(_CudaMaps(6, torch.float64), 18, 64, needs_grad=True)
    # More heads than a thread keeps sums for.
    assert not applies(_CudaMaps(40), 120, 64, needs_grad=False)
    assert torch.ops.mmscalable.refined_attention_cuda_kernels_fit(
        32, 96, 64, 4, 232448)
    # Not even the smallest tile fits the device's shared memory.
    props.shared_memory_per_block_optin = 4096
    assert not applies(_CudaMaps(6), 18, 64, needs_grad=False)
    props.shared_memory_per_block_optin = 232448
    enabled = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        # The parameters' gradients are sums of float atomics.
        assert not applies(_CudaMaps(6), 18, 64, needs_grad=True)
        assert applies(_CudaMaps(6), 18, 64, needs_grad=False)
    finally:
        torch.use_deterministic_algorithms(enabled, warn_only=warn_only)
