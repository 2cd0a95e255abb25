# Copyright (c) mmscalable contributors. All rights reserved.
"""The CUDA kernels of ``mmscalable/ops/csrc/common/cuda`` run from their own
source on the CPU, through the emulation of CUDA's execution model in
``tests/cuda_emulation`` (blocks of fibers, barriers, shared memory poisoned
with NaN and guarded, threads in shuffled orders), against the pure-PyTorch
references: every kernel, in every dtype it takes, at tile edges, with tiles
forced small by a smaller shared-memory budget than a device's, odd sizes,
the strided token layout and empty batches.

The kernels compile here with the host compiler (about a minute, cached by
the sources' hash). What the emulation cannot show (coalescing, occupancy,
speed) is left to ``tools/misc/device_check.sh`` on a GPU.
"""
import cuda_emulation
import pytest
import torch
from op_cases import (GROUP_MIX_GROUPS, group_mix_case,
                      refined_attention_inputs)

from mmscalable.ops import (group_mix_dwconv_reference,
                            refined_attention_reference,
                            window_partition_reference,
                            window_reverse_reference)

# Shared memory per block a kernel may opt into on an H100.
H100_SHARED_BYTES = 232448
SEEDS = (0, 1)
TOLERANCE = {
    torch.float64: 1e-12,
    torch.float32: 2e-5,
    torch.bfloat16: 2e-2,
    torch.float16: 2e-3,
}


@pytest.fixture(scope='module')
def emulated():
    return cuda_emulation.load()


def _guarded(tensor):
    """``tensor``'s values inside a NaN-filled buffer: a kernel that reads
    past either end brings NaN into its result."""
    guard = 64
    buffer = torch.full((tensor.numel() + 2 * guard, ),
                        float('nan'),
                        dtype=tensor.dtype)
    inner = buffer[guard:guard + tensor.numel()].view(tensor.shape)
    inner.copy_(tensor)
    return inner


def _assert_close(actual, expected, dtype):
    scale = expected.abs().max().item() + 1 if expected.numel() else 1
    torch.testing.assert_close(
        actual.double(), expected, rtol=0, atol=TOLERANCE[dtype] * scale)


# --------------------------------------------------------------------------
# The emulation itself
# --------------------------------------------------------------------------


def test_emulated_launch_fails_on_a_barrier_some_threads_skip(emulated):
    with pytest.raises(
            RuntimeError, match='divergent_barrier_kernel.*'
            'deadlocks'):
        emulated.run_faulty_kernel('divergent', 0)


def test_emulated_launch_fails_on_a_shared_memory_overflow(emulated):
    with pytest.raises(
            RuntimeError, match='shared_overflow_kernel.*outside its shared'):
        emulated.run_faulty_kernel('overflow', 0)


def test_emulated_threads_see_unwritten_shared_memory_without_barrier(
        emulated):
    expected = (torch.arange(64) + 1) % 64
    assert torch.equal(
        emulated.run_faulty_kernel('neighbour', 0), expected.float())
    for seed in SEEDS:
        out = emulated.run_faulty_kernel('neighbour_without_barrier', seed)
        # Shared memory starts as NaN: most reads come before the write.
        assert out.isnan().sum() > 16


# --------------------------------------------------------------------------
# Refined attention
# --------------------------------------------------------------------------

# (B, heads, N, d, expand): one token, a map smaller than the 3x3 kernel,
# maps of one and of several tiles with partial edge tiles.
RA_SHAPES = [
    (1, 2, 1, 3, 3),
    (2, 3, 2, 5, 3),
    (2, 2, 9, 4, 2),
    (1, 4, 33, 6, 3),
]


def _ra_inputs(B, H, N, d, expand, dtype):
    attn, value, *params = refined_attention_inputs(B, H, N, d, expand,
                                                    dtype)
    return attn, value, params


RA_KERNELS = ('forward', 'backward_rows', 'backward_value')


def _tiles(emulated, heads, hidden, n, dims, element_size, budget):
    """(rows, cols) of each kernel's tile with ``budget`` bytes, flat."""
    tiles = []
    for kernel in RA_KERNELS:
        tiles += emulated.refined_attention_plan(kernel, 1, heads, hidden, n,
                                                 dims, element_size,
                                                 budget)[:2]
    return tiles


def _smallest_tile_budget(emulated, shape, element_size):
    """The fewest bytes with which every kernel still finds a tile, so
    that the kernels run on their smallest tiles."""
    B, H, N, d, expand = shape
    low, high = 1, H100_SHARED_BYTES
    while low < high:
        mid = (low + high) // 2
        tiles = _tiles(emulated, H, H * expand, N, d, element_size, mid)
        if all(tiles):
            high = mid
        else:
            low = mid + 1
    return low


def _budgets(emulated, shape, dtype):
    element_size = 8 if dtype == torch.float64 else 4
    small = _smallest_tile_budget(emulated, shape, element_size)
    B, H, N, d, expand = shape
    tiles = _tiles(emulated, H, H * expand, N, d, element_size, small)
    # The smallest candidate tile is 1 x 8 (rows x columns).
    assert min(tiles[0::2]) == 1 and min(tiles[1::2]) == 8
    return [H100_SHARED_BYTES, small]


def _reference_grads(attn, value, params, grad_out):
    inputs = [
        t.detach().double().requires_grad_() for t in (attn, value, *params)
    ]
    out = refined_attention_reference(*inputs)
    return torch.autograd.grad((out * grad_out.double()).sum(), inputs)


@pytest.mark.parametrize('shape', RA_SHAPES)
@pytest.mark.parametrize('dtype', list(TOLERANCE))
def test_emulated_refined_attention_forward(emulated, shape, dtype):
    attn, value, params = _ra_inputs(*shape, dtype)
    expected = refined_attention_reference(attn.double(), value.double(),
                                           *[p.double() for p in params])
    for budget in _budgets(emulated, shape, dtype):
        for seed in SEEDS:
            out = emulated.refined_attention_forward(
                _guarded(attn), _guarded(value), params, budget, seed)
            assert out.dtype == dtype and out.shape == value.shape
            _assert_close(out, expected, dtype)


@pytest.mark.parametrize('shape', RA_SHAPES)
@pytest.mark.parametrize('dtype', list(TOLERANCE))
@pytest.mark.parametrize('kernel', ['rows', 'value'])
def test_emulated_refined_attention_backward(emulated, shape, dtype, kernel):
    """backward_rows (the gradients of A and of the seven parameters) and
    backward_value (the gradient of V)."""
    attn, value, params = _ra_inputs(*shape, dtype)
    grad_out = torch.randn(value.shape, dtype=torch.float64).to(dtype)
    expected = _reference_grads(attn, value, params, grad_out)
    checked = [0] + list(range(2, 9)) if kernel == 'rows' else [1]
    for budget, seed in zip(_budgets(emulated, shape, dtype), SEEDS):
        grads = emulated.refined_attention_backward(
            _guarded(grad_out), _guarded(attn), _guarded(value), params,
            budget, seed, kernel)
        for index in checked:
            # A and V's gradients in their dtype, the parameters' in the
            # accumulation type.
            assert grads[index].dtype == (dtype if index < 2 else
                                          params[index - 2].dtype)
            _assert_close(grads[index], expected[index], dtype)


def test_emulated_refined_attention_empty_batch(emulated):
    attn, value, params = _ra_inputs(0, 2, 5, 3, 2, torch.float32)
    out = emulated.refined_attention_forward(attn, value, params,
                                             H100_SHARED_BYTES, 0)
    assert out.shape == (0, 2, 5, 3)
    grads = emulated.refined_attention_backward(
        torch.zeros_like(value), attn, value, params, H100_SHARED_BYTES, 0,
        'both')
    assert [g.shape for g in grads
            ] == [attn.shape, value.shape] + [p.shape for p in params]
    for grad in grads[2:]:
        assert torch.equal(grad, torch.zeros_like(grad))


def test_emulated_refined_attention_tiles_follow_the_budget(emulated):
    """The launch planning the CUDA launcher uses: the largest tile that
    fits, smaller ones for smaller budgets, none below the smallest."""
    H, E, N, d = 6, 18, 196, 64
    tiles = _tiles(emulated, H, E, N, d, 4, H100_SHARED_BYTES)
    assert tiles[:2] == [8, 32]
    small = _tiles(emulated, H, E, N, d, 4, 48 * 1024)
    assert small[0] * small[1] < tiles[0] * tiles[1]
    assert _tiles(emulated, H, E, N, d, 4, 1024) == [0] * 6


def test_emulated_refined_attention_grid_is_one_dimensional(emulated):
    """Tiles and images share the grid's x axis (2^31 - 1 blocks), so a
    batch beyond 65535 (the limit of y) launches; the emulation refuses a
    grid beyond CUDA's limits as a GPU does."""
    for kernel in RA_KERNELS:
        rows, cols, tiles, blocks, _ = emulated.refined_attention_plan(
            kernel, 70000, 6, 18, 196, 64, 4, H100_SHARED_BYTES)
        assert blocks == tiles * 70000 < 2**31
        assert tiles == -(-196 //
                          (cols if kernel == 'backward_value' else rows))


# --------------------------------------------------------------------------
# Group-Mix depthwise conv
# --------------------------------------------------------------------------

# (B, H, W): odd sizes, one pixel, maps narrower than the kernels, maps of
# several row and column tiles (4 x 32) with partial edge tiles.
GM_SIZES = [(2, 7, 9), (1, 1, 1), (3, 2, 5), (1, 9, 70)]


def _gm_case(size, groups, dtype):
    """The strided token layout, inside a NaN-guarded buffer."""
    return group_mix_case(size, groups, dtype=dtype, place=_guarded)


def _gm_budgets(emulated, x, ks, gc):
    """The device's default shared memory, and a budget small enough to
    force one-channel tiles."""
    budgets = [48 * 1024]
    small = 1024
    while emulated.group_mix_tile_channels(x, ks, gc, small) > 1:
        small //= 2
    assert emulated.group_mix_tile_channels(x, ks, gc,
                                            budgets[0]) > 1 or (max(ks) > 31)
    return budgets + [small]


@pytest.mark.parametrize('size', GM_SIZES)
@pytest.mark.parametrize('groups', GROUP_MIX_GROUPS)
@pytest.mark.parametrize('dtype', list(TOLERANCE))
def test_emulated_group_mix_forward(emulated, size, groups, dtype):
    x, weight, bias, ks, gc = _gm_case(size, groups, dtype)
    for budget in _gm_budgets(emulated, x, ks, gc):
        for hardswish, with_bias in ((False, False), (True, True)):
            b = bias if with_bias else None
            expected = group_mix_dwconv_reference(
                x.double(), weight.double(), None if b is None else b.double(),
                ks, gc, hardswish)
            out = emulated.group_mix_forward(
                x, _guarded(weight), None if b is None else _guarded(b), ks,
                gc, hardswish, budget, SEEDS[budget % 2])
            assert out.dtype == dtype and out.is_contiguous()
            _assert_close(out, expected, dtype)


@pytest.mark.parametrize('size', GM_SIZES)
@pytest.mark.parametrize('groups', GROUP_MIX_GROUPS)
@pytest.mark.parametrize('dtype', list(TOLERANCE))
def test_emulated_group_mix_input_and_weight_grad(emulated, size, groups,
                                                  dtype):
    """input_grad_kernel, weight_grad_kernel and reduce_partials_kernel on
    the strided token layout."""
    x, weight, _, ks, gc = _gm_case(size, groups, dtype)
    x64 = x.double().requires_grad_()
    w64 = weight.double().requires_grad_()
    out = group_mix_dwconv_reference(x64, w64, None, ks, gc)
    grad_out = torch.randn(out.shape, dtype=torch.float64).to(dtype)
    expected_x, expected_w = torch.autograd.grad(
        (out * grad_out.double()).sum(), (x64, w64))
    for budget in _gm_budgets(emulated, x, ks, gc):
        grad_x, grad_w = emulated.group_mix_backward(
            _guarded(grad_out), x, _guarded(weight), ks, gc, budget,
            SEEDS[budget % 2])
        assert grad_x.shape == x.shape and grad_x.dtype == dtype
        _assert_close(grad_x, expected_x, dtype)
        # A weight's gradient sums S * B * H * W products.
        torch.testing.assert_close(
            grad_w.double(),
            expected_w,
            rtol=0,
            atol=TOLERANCE[dtype] * (expected_w.abs().max().item() + 1) *
            max(1, x.shape[0] * size[1] * size[2])**.5)


def test_emulated_group_mix_empty_batch(emulated):
    x, weight, bias, ks, gc = _gm_case((0, 4, 5), GROUP_MIX_GROUPS[0],
                                       torch.float32)
    out = emulated.group_mix_forward(x, weight, bias, ks, gc, False, 48 * 1024,
                                     0)
    assert out.shape == (0, 12, 4, 5)
    grad_x, grad_w = emulated.group_mix_backward(
        torch.zeros(out.shape), x, weight, ks, gc, 48 * 1024, 0)
    assert grad_x.shape == x.shape
    assert torch.equal(grad_w, torch.zeros_like(weight))


# --------------------------------------------------------------------------
# Window partition / reverse
# --------------------------------------------------------------------------


@pytest.mark.parametrize('dtype', list(TOLERANCE))
@pytest.mark.parametrize('shape,window_size', [((2, 7, 9, 12), 4),
                                               ((1, 8, 8, 5), 4),
                                               ((3, 5, 3, 3), 7),
                                               ((2, 1, 1, 8), 1)])
def test_emulated_window_partition_and_reverse(emulated, dtype, shape,
                                               window_size):
    """Bit-identical to the references for every unit width (16, 8, 4, 2
    bytes, where the channels allow), grid-stride loops (one SM) and
    64-bit indices."""
    x = torch.randn(shape, dtype=torch.float64).to(dtype)
    B, H, W, C = shape
    expected = window_partition_reference(x, window_size)
    for max_unit, sm_count, int64 in ((16, 132, False), (8, 1, True),
                                      (4, 1, False), (2, 2, False)):
        windows = emulated.window_op(x, True, window_size, H, W, max_unit,
                                     sm_count, int64, 0)
        assert torch.equal(windows, expected)
        back = emulated.window_op(windows, False, window_size, H, W, max_unit,
                                  sm_count, int64, 1)
        assert torch.equal(
            back, window_reverse_reference(expected, window_size, H, W))
        assert torch.equal(back, x)


def test_emulated_window_ops_empty_batch(emulated):
    x = torch.zeros(0, 5, 6, 4)
    windows = emulated.window_op(x, True, 4, 5, 6, 16, 132, False, 0)
    assert windows.shape == (0, 16, 4)
    assert emulated.window_op(windows, False, 4, 5, 6, 16, 132, False,
                              0).shape == (0, 5, 6, 4)


# --------------------------------------------------------------------------
# The tests notice a kernel without barriers
# --------------------------------------------------------------------------


def test_emulated_kernels_without_barriers_fail():
    """Built with every ``__syncthreads()`` removed, the kernels that share
    data through shared memory give wrong results (NaN or off values)."""
    broken = cuda_emulation.load(barriers=False)
    shape = RA_SHAPES[-1]
    attn, value, params = _ra_inputs(*shape, torch.float64)
    expected = refined_attention_reference(attn, value, *params)
    out = broken.refined_attention_forward(attn, value, params,
                                           H100_SHARED_BYTES, 0)
    assert not torch.allclose(out, expected, equal_nan=False)
    grad_out = torch.randn(value.shape, dtype=torch.float64)
    reference = _reference_grads(attn, value, params, grad_out)
    grads = broken.refined_attention_backward(grad_out, attn, value, params,
                                              H100_SHARED_BYTES, 0, 'both')
    assert not torch.allclose(grads[0], reference[0])
    assert not torch.allclose(grads[1], reference[1])

    x, weight, bias, ks, gc = _gm_case((2, 7, 9), GROUP_MIX_GROUPS[0],
                                       torch.float64)
    expected = group_mix_dwconv_reference(x, weight, bias, ks, gc)
    out = broken.group_mix_forward(x, weight, bias, ks, gc, False, 48 * 1024,
                                   0)
    assert not torch.allclose(out, expected)
    grad_x, grad_w = broken.group_mix_backward(
        torch.ones_like(out), x, weight, ks, gc, 48 * 1024, 0)
    x64 = x.clone().requires_grad_()
    w64 = weight.clone().requires_grad_()
    ref_x, ref_w = torch.autograd.grad(
        group_mix_dwconv_reference(x64, w64, None, ks, gc).sum(), (x64, w64))
    assert not torch.allclose(grad_x, ref_x)
    assert not torch.allclose(grad_w, ref_w)
