# Copyright (c) mmscalable contributors. All rights reserved.
"""Tests of mmscalable.ops.group_mix_dwconv.

The compiled op (``torch.ops.mmscalable.group_mix_dwconv``) is checked
against the pure-PyTorch reference, with gradcheck, under fake tensors,
``torch.compile`` and ``torch.export``. Set ``MMSCALABLE_REQUIRE_EXT=1`` to
turn a missing extension into a failure instead of a skip.
"""

import pytest
import torch
import torch.nn.functional as F

from ext_marks import (EXT_AVAILABLE, requires_cuda_ext, requires_ext,
                       requires_fake_kernels)
from op_cases import GROUP_MIX_GROUPS as GROUPS
from op_cases import group_mix_case as _case
from mmscalable.ops import (ext_info, group_mix_dwconv,
                            group_mix_dwconv_reference,
                            pack_depthwise_weights, unpack_depthwise_weights)

# (B, H, W): odd sizes, a single pixel, maps narrower than the kernels and
# wider than one vector of columns (16) with a remainder.
SIZES = [(2, 7, 9), (1, 1, 1), (3, 2, 5), (1, 19, 37), (3, 16, 16)]


def _op(*args, **kwargs):
    return torch.ops.mmscalable.group_mix_dwconv(*args, **kwargs)


@pytest.fixture
def extension_path(monkeypatch):
    monkeypatch.delenv('MMSCALABLE_DISABLE_EXT', raising=False)
    if not EXT_AVAILABLE:
        pytest.fail(f"mmscalable._ext: {ext_info()['error']}")


# --------------------------------------------------------------------------
# Reference semantics
# --------------------------------------------------------------------------


def test_reference_matches_one_conv_per_group():
    x, weight, bias, ks, gc = _case((2, 6, 5), GROUPS[0], streams=2)
    out = group_mix_dwconv_reference(x, weight, bias, ks, gc, True)
    assert out.shape == (4, 12, 6, 5) and out.is_contiguous()
    kernels = unpack_depthwise_weights(weight, ks, gc)
    for s in range(2):
        for b in range(2):
            maps = x[b, :, :, s].permute(2, 0, 1).unsqueeze(0)
            parts = maps.split(gc, dim=1)
            expected = torch.cat([
                F.conv2d(p, k, padding=k.shape[-1] // 2, groups=k.shape[0])
                for p, k in zip(parts, kernels)
            ], 1) + bias.view(-1, 1, 1)
            torch.testing.assert_close(out[s * 2 + b],
                                       F.hardswish(expected)[0])
    assert torch.equal(pack_depthwise_weights(kernels), weight)


def test_reference_and_public_function_refuse_bad_arguments():
    x, weight, bias, ks, gc = _case((1, 4, 4), GROUPS[0])
    cases = [
        ((x[..., 0], weight, bias, ks, gc), '5-D'),
        ((x, weight, bias, [3, 5], gc), 'one kernel size per channel group'),
        ((x, weight, bias, [3, 4, 7], gc), 'odd'),
        ((x, weight, bias, ks, [4, 4, 5]), 'add up to 13 channels'),
        ((x, weight[:-1], bias, ks, gc), 'packed kernels'),
        ((x, weight, bias[:-1], ks, gc), 'one value per channel'),
        ((x, weight.float(), bias, ks, gc), 'weight is torch.float32'),
    ]
    for fn in (group_mix_dwconv, group_mix_dwconv_reference):
        for args, message in cases:
            with pytest.raises(ValueError, match=message):
                fn(*args)


@requires_ext
def test_op_refuses_bad_arguments(extension_path):
    """The C++ checks raise RuntimeError naming the problem."""
    x, weight, bias, ks, gc = _case((1, 4, 4), GROUPS[0])
    cases = [
        ((x[..., 0], weight, bias, ks, gc), '5-D'),
        ((x, weight, bias, [3, 5], gc), 'kernel_sizes has 2 entries'),
        ((x, weight, bias, [3, 4, 7], gc), 'odd'),
        ((x, weight, bias, ks, [4, 4, 5]), 'add up to 13 channels'),
        ((x, weight[:-1], bias, ks, gc), 'packed kernels'),
        ((x, weight, bias[:-1], ks, gc), 'one value per channel'),
        ((x, weight.float(), bias, ks, gc), 'weight has dtype'),
        ((x.int(), weight, bias, ks, gc), 'must be float32'),
        ((x, weight, bias, [3] * 9, [1] * 8 + [4]), 'at most 8'),
    ]
    for args, message in cases:
        with pytest.raises(RuntimeError, match=message):
            _op(*args)


# --------------------------------------------------------------------------
# CPU kernel against the reference
# --------------------------------------------------------------------------


@requires_ext
@pytest.mark.parametrize('size', SIZES)
@pytest.mark.parametrize('groups', GROUPS)
@pytest.mark.parametrize('dtype,tol', [(torch.float64, 1e-12),
                                       (torch.float32, 1e-5)])
def test_cpu_forward_matches_reference(extension_path, size, groups, dtype,
                                       tol):
    for token_layout in (True, False):
        x, weight, bias, ks, gc = _case(
            size, groups, dtype=dtype, token_layout=token_layout)
        for b, act in ((None, False), (bias, True)):
            out = _op(x, weight, b, ks, gc, act)
            expected = group_mix_dwconv_reference(x, weight, b, ks, gc, act)
            assert out.shape == expected.shape and out.is_contiguous()
            torch.testing.assert_close(out, expected, rtol=tol, atol=tol)


@requires_ext
@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
def test_cpu_low_precision_accumulates_in_float(extension_path, dtype):
    x, weight, bias, ks, gc = _case((2, 9, 20), GROUPS[0], dtype=dtype)
    out = _op(x, weight, bias, ks, gc, True)
    expected = group_mix_dwconv_reference(x.double(), weight.double(),
                                          bias.double(), ks, gc, True)
    assert out.dtype == dtype
    # One rounding of a float sum, not one per tap.
    torch.testing.assert_close(
        out.double(), expected, rtol=1e-2, atol=1e-2 * expected.abs().max())


@requires_ext
@pytest.mark.parametrize('size', [(2, 7, 9), (1, 1, 1), (3, 3, 18)])
@pytest.mark.parametrize('groups', [GROUPS[0], GROUPS[4]])
def test_cpu_backward_matches_reference(extension_path, size, groups):
    x, weight, bias, ks, gc = _case(size, groups, dtype=torch.float64)
    grad = torch.randn(3 * size[0], sum(gc), size[1], size[2],
                       dtype=torch.float64)
    results = []
    for fn in (_op, group_mix_dwconv_reference):
        leaves = [t.detach().clone().requires_grad_() for t in
                  (x, weight, bias)]
        (fn(*leaves, ks, gc) * grad).sum().backward()
        results.append([t.grad for t in leaves])
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


@requires_ext
def test_cpu_gradcheck(extension_path):
    for groups, token_layout in ((GROUPS[0], True), (GROUPS[3], False)):
        x, weight, bias, ks, gc = _case((2, 5, 6), groups,
                                        token_layout=token_layout)
        x = x.detach().requires_grad_()
        weight.requires_grad_()
        bias.requires_grad_()
        assert torch.autograd.gradcheck(
            lambda x, w, b: _op(x, w, b, ks, gc), (x, weight, bias))


@requires_ext
def test_backward_op_leaves_out_masked_gradients(extension_path):
    x, weight, _, ks, gc = _case((1, 4, 5), GROUPS[0])
    grad = torch.randn(3, 12, 4, 5, dtype=torch.float64)
    grad_input, grad_weight = torch.ops.mmscalable.group_mix_dwconv_backward(
        grad, x, weight, ks, gc, [True, False])
    assert grad_input.shape == x.shape and grad_weight.numel() == 0
    grad_input, grad_weight = torch.ops.mmscalable.group_mix_dwconv_backward(
        grad, x, weight, ks, gc, [False, True])
    assert grad_input.numel() == 0 and grad_weight.shape == weight.shape


@requires_ext
def test_fused_hardswish_refuses_gradients(extension_path):
    x, weight, bias, ks, gc = _case((1, 3, 3), GROUPS[0])
    out = _op(x, weight.requires_grad_(), bias, ks, gc, True)
    with pytest.raises(RuntimeError, match='no backward'):
        out.sum().backward()


# --------------------------------------------------------------------------
# Shared arithmetic, observed through the CPU kernel
# --------------------------------------------------------------------------


@requires_ext
def test_tap_map_and_halo_by_hand(extension_path):
    """A one-hot kernel shifts the map by its offset from the centre, with
    zeros entering from the border (tap_source / halo_offset): every tap of
    a 1x1, 3x3, 5x5 and 7x7 group in one call."""
    H, W = 6, 9
    x = torch.arange(1., 1. + H * W, dtype=torch.float64).view(1, H, W, 1, 1)
    x = x.expand(1, H, W, 1, 4).contiguous()
    for tap_row in range(7):
        for tap_col in range(7):
            kernels = []
            for k in (1, 3, 5, 7):
                kernel = torch.zeros(1, 1, k, k, dtype=torch.float64)
                r = k // 2
                i, j = tap_row - 3 + r, tap_col - 3 + r
                if 0 <= i < k and 0 <= j < k:
                    kernel[0, 0, i, j] = 1
                kernels.append(kernel)
            out = _op(x, pack_depthwise_weights(kernels), None, [1, 3, 5, 7],
                      [1, 1, 1, 1])
            padded = F.pad(x[0, :, :, 0, 0], (3, 3, 3, 3))
            shifted = padded[tap_row:tap_row + H, tap_col:tap_col + W]
            for channel, kernel in enumerate(kernels):
                expected = shifted if kernel.any() else torch.zeros_like(
                    shifted)
                torch.testing.assert_close(out[0, channel], expected)


@requires_ext
def test_group_table_and_weight_offsets(extension_path):
    """Every channel reads its own packed kernel (group_of, weight_begin):
    a constant map gives each channel the sum of its taps that fall inside
    the map."""
    ks, gc = [3, 5, 7, 1], [2, 3, 1, 2]
    weight = torch.randn(sum(c * k * k for c, k in zip(gc, ks)),
                         dtype=torch.float64)
    x = torch.ones(1, 9, 9, 1, sum(gc), dtype=torch.float64)
    out = _op(x, weight, None, ks, gc)
    centre = out[0, :, 4, 4]
    expected = torch.cat([k.sum((1, 2, 3)) for k in
                          unpack_depthwise_weights(weight, ks, gc)])
    torch.testing.assert_close(centre, expected)


@requires_ext
def test_epilogue_bias_then_hardswish(extension_path):
    x = torch.linspace(-5, 5, 21, dtype=torch.float64).view(1, 1, 21, 1, 1)
    weight = torch.full((1, ), 1., dtype=torch.float64)
    bias = torch.full((1, ), 0.5, dtype=torch.float64)
    out = _op(x, weight, bias, [1], [1], True)
    torch.testing.assert_close(out.flatten(), F.hardswish(x.flatten() + 0.5))


# --------------------------------------------------------------------------
# Routing, fake tensors, torch.compile and torch.export
# --------------------------------------------------------------------------


def test_disable_switch_routes_to_reference(monkeypatch):
    monkeypatch.setenv('MMSCALABLE_DISABLE_EXT', '1')
    x, weight, bias, ks, gc = _case((1, 3, 4), GROUPS[0])
    torch.testing.assert_close(
        group_mix_dwconv(x, weight, bias, ks, gc),
        group_mix_dwconv_reference(x, weight, bias, ks, gc))


@requires_ext
@requires_fake_kernels
def test_fake_tensors(extension_path):
    from torch._subclasses.fake_tensor import FakeTensorMode
    x, weight, bias, ks, gc = _case((2, 5, 7), GROUPS[0])
    with FakeTensorMode() as mode:
        fx, fw, fb = (mode.from_tensor(t) for t in (x, weight, bias))
        out = group_mix_dwconv(fx, fw, fb, ks, gc)
        assert out.shape == (6, 12, 5, 7)
        grads = torch.ops.mmscalable.group_mix_dwconv_backward(
            out, fx, fw, ks, gc, [True, True])
        assert grads[0].shape == x.shape and grads[1].shape == weight.shape


def _graph_targets(graph_module):
    return {str(node.target) for node in graph_module.graph.nodes}


@requires_ext
@requires_fake_kernels
def test_compile_fullgraph_keeps_one_op(extension_path):
    x, weight, bias, ks, gc = _case((2, 5, 7), GROUPS[0], dtype=torch.float32)
    graphs = []

    def backend(gm, example_inputs):
        graphs.append(gm)
        return gm

    def fn(x, weight, bias):
        return group_mix_dwconv(x, weight, bias, ks, gc) * 2

    out = torch.compile(fn, backend=backend, fullgraph=True)(x, weight, bias)
    torch.testing.assert_close(
        out, 2 * group_mix_dwconv_reference(x, weight, bias, ks, gc))
    assert any('mmscalable.group_mix_dwconv' in target
               for target in _graph_targets(graphs[0]))
    assert not any('conv2d' in target for target in _graph_targets(graphs[0]))


@requires_ext
def test_compile_with_inductor_and_backward(extension_path):
    x, weight, bias, ks, gc = _case((1, 6, 5), GROUPS[1], dtype=torch.float32)
    leaves = [t.detach().clone().requires_grad_() for t in (x, weight, bias)]

    def fn(x, weight, bias):
        return F.relu(group_mix_dwconv(x, weight, bias, ks, gc)).sum()

    torch.compile(fn, fullgraph=True)(*leaves).backward()
    reference = [
        t.detach().clone().requires_grad_() for t in (x, weight, bias)
    ]
    F.relu(group_mix_dwconv_reference(*reference, ks, gc)).sum().backward()
    for a, b in zip(leaves, reference):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-4, atol=1e-4)


@requires_ext
@requires_fake_kernels
def test_export_keeps_one_op(extension_path):
    x, weight, bias, ks, gc = _case((1, 5, 6), GROUPS[0], dtype=torch.float32)

    class Module(torch.nn.Module):

        def __init__(self):
            super().__init__()
            self.weight = torch.nn.Parameter(weight)
            self.bias = torch.nn.Parameter(bias)

        def forward(self, x):
            return group_mix_dwconv(x, self.weight, self.bias, ks, gc, True)

    module = Module()
    # Export the map layout a caller would pass (the tokens' view).
    tokens = x.contiguous()
    exported = torch.export.export(module, (tokens, ))
    assert 'mmscalable.group_mix_dwconv.default' in _graph_targets(
        exported.graph_module)
    with torch.no_grad():
        torch.testing.assert_close(exported.module()(tokens), module(tokens))


# --------------------------------------------------------------------------
# CUDA
# --------------------------------------------------------------------------


@requires_cuda_ext
@pytest.mark.parametrize('dtype,tol', [(torch.float32, 1e-5),
                                       (torch.float16, 1e-2),
                                       (torch.bfloat16, 3e-2)])
@pytest.mark.parametrize('groups', [GROUPS[0], GROUPS[4]])
def test_cuda_matches_reference(extension_path, dtype, tol, groups):
    for token_layout in (True, False):
        x, weight, bias, ks, gc = _case((2, 19, 37), groups, device='cuda',
                                        dtype=dtype,
                                        token_layout=token_layout)
        out = _op(x, weight, bias, ks, gc, True)
        expected = group_mix_dwconv_reference(x.double(), weight.double(),
                                              bias.double(), ks, gc, True)
        torch.testing.assert_close(
            out.double(), expected, rtol=tol,
            atol=tol * expected.abs().max())


@requires_cuda_ext
def test_cuda_gradcheck(extension_path):
    x, weight, bias, ks, gc = _case((1, 5, 6), GROUPS[0], device='cuda')
    x = x.detach().requires_grad_()
    assert torch.autograd.gradcheck(
        lambda x, w, b: _op(x, w, b, ks, gc),
        (x, weight.requires_grad_(), bias.requires_grad_()))


def _strided_leaf(x, dtype):
    """A new leaf of ``dtype`` holding a copy of the tensor that ``x`` (from
    :func:`_case`) is a view of, and the view of it with ``x``'s strides:
    gradients reach the op through the strided layout itself."""
    base = x if x._base is None else x._base
    assert base.is_contiguous() and base.storage_offset() == 0
    leaf = base.detach().to(dtype, copy=True).requires_grad_()
    return leaf, leaf.as_strided(x.shape, x.stride(), x.storage_offset())


@requires_cuda_ext
@pytest.mark.parametrize('dtype',
                         [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize('groups', [GROUPS[0], GROUPS[4]])
@pytest.mark.parametrize('token_layout', [True, False])
def test_cuda_backward_matches_reference(extension_path, dtype, groups,
                                         token_layout):
    # The op takes the strided view itself (tokens or a permuted map), as
    # the model passes it, and its gradient flows back into that layout.
    x, weight, bias, ks, gc = _case((2, 9, 11), groups, device='cuda',
                                    dtype=dtype, token_layout=token_layout)
    B, H, W, S, C = x.shape
    gen = torch.Generator().manual_seed(1)
    grad = torch.randn(S * B, C, H, W, generator=gen,
                       dtype=torch.float64).to('cuda', dtype)
    results = []
    for fn, cast in ((_op, dtype), (group_mix_dwconv_reference,
                                    torch.float64)):
        base, view = _strided_leaf(x, cast)
        assert not view.is_contiguous()
        leaves = [base] + [
            t.detach().to(cast, copy=True).requires_grad_()
            for t in (weight, bias)
        ]
        out = fn(view, *leaves[1:], ks, gc)
        results.append(torch.autograd.grad(out, leaves, grad.to(cast)))
    # The kernels sum in float32: over the k * k taps for the input's
    # gradient, over the S * B * H * W positions for the kernels' (the
    # bias's is torch's sum); a float32 sum of n terms of either sign is off
    # by about eps(float32) * sqrt(n) of its largest values (16 times that
    # for the order of the sums). Float16 and bfloat16 results are rounded
    # once more, by half their eps (rtol: their eps).
    length = S * B * H * W + max(ks)**2
    atol = 16 * torch.finfo(torch.float32).eps * length**0.5
    for name, got, want in zip(('input', 'weight', 'bias'), *results):
        assert got.dtype == dtype and got.shape == want.shape, name
        torch.testing.assert_close(
            got.double(), want, rtol=torch.finfo(dtype).eps,
            atol=atol * want.abs().max().item(),
            msg=lambda m, name=name: f'gradient of the {name}: {m}')


@pytest.fixture
def unwritten_memory_is_nan():
    """New tensors that nothing writes read NaN, not whatever their memory
    held: torch fills ``torch.empty``'s memory under deterministic
    algorithms (``torch.utils.deterministic.fill_uninitialized_memory``).
    The previous settings are restored after the test."""
    if not hasattr(torch.utils, 'deterministic'):
        pytest.skip(f'torch {torch.__version__} has no '
                    'torch.utils.deterministic.fill_uninitialized_memory')
    enabled = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    fill = torch.utils.deterministic.fill_uninitialized_memory
    torch.use_deterministic_algorithms(True)
    torch.utils.deterministic.fill_uninitialized_memory = True
    try:
        yield
    finally:
        torch.utils.deterministic.fill_uninitialized_memory = fill
        torch.use_deterministic_algorithms(enabled, warn_only=warn_only)


@requires_cuda_ext
@pytest.mark.parametrize('dtype', [torch.float32, torch.bfloat16])
@pytest.mark.parametrize('token_layout', [True, False])
def test_cuda_empty_batch(extension_path, unwritten_memory_is_nan, dtype,
                          token_layout):
    x, weight, bias, ks, gc = _case((0, 7, 9), GROUPS[0], device='cuda',
                                    dtype=dtype, token_layout=token_layout)
    out = _op(x, weight, bias, ks, gc, True)
    assert out.shape == (0, 12, 7, 9) and out.device == x.device
    grad_input, grad_weight = torch.ops.mmscalable.group_mix_dwconv_backward(
        torch.empty_like(out), x, weight, ks, gc, [True, True])
    assert grad_input.shape == x.shape
    # No position: the kernels' gradient is zero, not left unwritten.
    assert torch.equal(grad_weight, torch.zeros_like(weight))
    leaves = [t.detach().requires_grad_() for t in (x, weight, bias)]
    grads = torch.autograd.grad(
        _op(*leaves, ks, gc), leaves, torch.empty_like(out))
    for got, leaf in zip(grads, leaves):
        assert torch.equal(got, torch.zeros_like(leaf))


@requires_ext
@pytest.mark.parametrize('dtype', [torch.float64, torch.float32])
def test_cpu_empty_batch_gives_zero_weight_grad(extension_path,
                                                unwritten_memory_is_nan,
                                                dtype):
    """A zero-size batch contributes nothing to ``weight.grad`` (the
    backward's allocation, NaN-filled here, is not returned as is)."""
    x, weight, bias, ks, gc = _case((0, 7, 9), GROUPS[0], dtype=dtype)
    leaves = [t.detach().requires_grad_() for t in (x, weight, bias)]
    out = group_mix_dwconv(*leaves, ks, gc)
    assert out.shape == (0, 12, 7, 9)
    out.sum().backward()
    for leaf in leaves:
        assert torch.equal(leaf.grad, torch.zeros_like(leaf))
