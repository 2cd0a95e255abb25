# Copyright (c) mmscalable contributors. All rights reserved.
"""Tests of mmscalable.ops window partition / reverse.

The compiled kernels (``mmscalable._ext``) are checked against the
pure-PyTorch references, and both paths are checked for autograd. Set
``MMSCALABLE_REQUIRE_EXT=1`` to turn a missing extension into a failure
instead of a skip (CI that builds the ops should).
"""

import pytest
import torch

from ext_marks import (EXT_AVAILABLE, REQUIRE_EXT, requires_cuda,
                       requires_cuda_ext, requires_ext, requires_fake_kernels)
from mmscalable.ops import (ext_info, load_ext, window_partition,
                            window_partition_reference, window_reverse,
                            window_reverse_reference)

# (B, H, W, C, window_size): sizes that are multiples of the window, sizes
# that are not, maps smaller than one window and a window of one token.
SHAPES = [
    (2, 9, 13, 5, 7),
    (1, 14, 14, 8, 7),
    (3, 3, 2, 4, 7),
    (2, 8, 6, 3, 4),
    (1, 5, 4, 6, 1),
    (2, 7, 7, 16, 7),
]
DTYPES = [torch.float32, torch.float64, torch.bfloat16]
CUDA_DTYPES = [torch.float32, torch.float16, torch.bfloat16]

def _ext():
    ext = load_ext()
    assert ext is not None, f"mmscalable._ext: {ext_info()['error']}"
    return ext


def _partition_op(x, window_size):
    _ext()
    return torch.ops.mmscalable.window_partition(x, window_size)


def _reverse_op(windows, window_size, H, W):
    _ext()
    return torch.ops.mmscalable.window_reverse(windows, window_size, H, W)


def _random_map(shape, dtype=torch.float32, device='cpu'):
    B, H, W, C, _ = shape
    return torch.randn(B, H, W, C, dtype=torch.float64).to(device, dtype)


@pytest.fixture
def reference_path(monkeypatch):
    """Route the public functions to the pure-PyTorch references."""
    monkeypatch.setenv('MMSCALABLE_DISABLE_EXT', '1')


@pytest.fixture
def extension_path(monkeypatch):
    """Route the public functions to the compiled kernels."""
    monkeypatch.delenv('MMSCALABLE_DISABLE_EXT', raising=False)
    _ext()


# --------------------------------------------------------------------------
# Reference semantics
# --------------------------------------------------------------------------


def test_reference_layout_by_hand():
    # 1 x 3 x 3 map, ws = 2: windows of the 4 x 4 padded map, row-major.
    x = torch.arange(1., 10.).view(1, 3, 3, 1)
    windows = window_partition_reference(x, 2)
    expected = torch.tensor([
        [1., 2., 4., 5.],
        [3., 0., 6., 0.],
        [7., 8., 0., 0.],
        [9., 0., 0., 0.],
    ]).view(4, 4, 1)
    assert torch.equal(windows, expected)
    assert torch.equal(window_reverse_reference(windows, 2, 3, 3), x)


@pytest.mark.parametrize('shape', SHAPES)
def test_reference_shapes(shape):
    B, H, W, C, ws = shape
    x = _random_map(shape)
    windows = window_partition_reference(x, ws)
    num_windows = B * -(-H // ws) * -(-W // ws)
    assert windows.shape == (num_windows, ws * ws, C)
    assert windows.is_contiguous()
    # Exactly the padded positions are zero-filled.
    assert windows.abs().sum() == pytest.approx(x.abs().sum().item())
    assert torch.equal(window_reverse_reference(windows, ws, H, W), x)


# --------------------------------------------------------------------------
# Extension
# --------------------------------------------------------------------------


def test_extension_present_when_built():
    info = ext_info()
    if not info['available']:
        if REQUIRE_EXT:
            pytest.fail('MMSCALABLE_REQUIRE_EXT=1 but mmscalable._ext is not '
                        f"available: {info['error']}")
        pytest.skip(f"mmscalable._ext is not built: {info['error']}")
    assert info['error'] is None
    # The ops its library registered with the dispatcher.
    assert {
        'window_partition', 'window_reverse', 'group_mix_dwconv',
        'group_mix_dwconv_backward', 'refined_attention_forward',
        'refined_attention_backward'
    } <= set(info['ops'])
    assert info['cuda'] == bool(_ext().compiled_with_cuda())


def test_ext_disabled_by_env(monkeypatch):
    monkeypatch.setenv('MMSCALABLE_DISABLE_EXT', '1')
    assert load_ext() is None
    info = ext_info()
    assert not info['available'] and not info['cuda'] and info['ops'] == []
    assert 'MMSCALABLE_DISABLE_EXT' in info['error'] or not EXT_AVAILABLE


@requires_ext
def test_extension_lacking_an_op_is_unavailable(monkeypatch):
    # A module built from older sources lacks an op that Python declares:
    # every op then takes its reference, and ext_info says why.
    from mmscalable.ops import ext_loader
    _ext()
    monkeypatch.setattr(ext_loader, '_import_result',
                        ext_loader._import_result)
    monkeypatch.setattr(ext_loader, '_declared_ops',
                        dict(ext_loader._declared_ops))
    ext_loader.register_op('mmscalable::no_such_op', lambda x: x)
    assert load_ext() is None
    assert not ext_loader.has_compiled_kernel(torch.randn(2))
    assert 'no_such_op' in ext_info()['error']
    assert 'rebuild' in ext_info()['error']


@requires_ext
@pytest.mark.parametrize('dtype', DTYPES)
@pytest.mark.parametrize('shape', SHAPES)
def test_extension_matches_reference(shape, dtype):
    B, H, W, C, ws = shape
    x = _random_map(shape, dtype)
    windows = _partition_op(x, ws)
    expected = window_partition_reference(x, ws)
    assert windows.dtype == dtype and windows.is_contiguous()
    # Pure copies: results must be bit-identical, whatever the dtype.
    assert torch.equal(windows, expected)
    restored = _reverse_op(windows, ws, H, W)
    assert torch.equal(restored, window_reverse_reference(expected, ws, H, W))
    assert torch.equal(restored, x)


@requires_ext
def test_extension_float16_cpu():
    shape = (2, 9, 13, 5, 7)
    x = _random_map(shape, torch.float16)
    assert torch.equal(_partition_op(x, 7), window_partition_reference(x, 7))


@pytest.mark.parametrize('path', ['extension_path', 'reference_path'])
@pytest.mark.parametrize('shape', SHAPES)
def test_partition_then_reverse_is_identity(shape, path, request):
    if path == 'extension_path' and not EXT_AVAILABLE and not REQUIRE_EXT:
        pytest.skip('mmscalable._ext is not built')
    request.getfixturevalue(path)
    B, H, W, C, ws = shape
    x = _random_map(shape)
    windows = window_partition(x, ws)
    assert torch.equal(windows, window_partition_reference(x, ws))
    out = window_reverse(windows, ws, H, W)
    assert out.shape == x.shape and out.is_contiguous()
    assert torch.equal(out, x)


@requires_ext
def test_non_contiguous_inputs(extension_path):
    ws, H, W = 7, 9, 13
    # A channels-first tensor viewed channels-last: non-contiguous strides.
    x = torch.randn(2, 5, H, W).permute(0, 2, 3, 1)
    assert not x.is_contiguous()
    windows = window_partition(x, ws)
    assert torch.equal(windows, window_partition_reference(x, ws))
    # A strided slice of the windows (every other channel).
    wide = torch.randn(windows.shape[0], ws * ws, 10)
    sliced = wide[..., ::2]
    assert not sliced.is_contiguous()
    assert torch.equal(
        window_reverse(sliced, ws, H, W),
        window_reverse_reference(sliced.contiguous(), ws, H, W))


@requires_ext
def test_empty_batch(extension_path):
    x = torch.randn(0, 9, 13, 5)
    windows = window_partition(x, 7)
    assert windows.shape == (0, 49, 5)
    assert window_reverse(windows, 7, 9, 13).shape == (0, 9, 13, 5)


def test_unsupported_dtype_falls_back_to_reference():
    x = torch.arange(2 * 9 * 13 * 3).view(2, 9, 13, 3)
    windows = window_partition(x, 7)
    assert windows.dtype == x.dtype
    assert torch.equal(window_reverse(windows, 7, 9, 13), x)


# --------------------------------------------------------------------------
# Autograd
# --------------------------------------------------------------------------


@pytest.mark.parametrize('path', ['extension_path', 'reference_path'])
@pytest.mark.parametrize('shape', [(2, 9, 13, 3, 7), (1, 4, 4, 2, 2),
                                   (1, 3, 2, 2, 7)])
def test_gradcheck(shape, path, request):
    if path == 'extension_path' and not EXT_AVAILABLE and not REQUIRE_EXT:
        pytest.skip('mmscalable._ext is not built')
    request.getfixturevalue(path)
    B, H, W, C, ws = shape
    x = _random_map(shape, torch.float64).requires_grad_()
    assert torch.autograd.gradcheck(
        lambda t: window_partition(t, ws), (x, ), fast_mode=False)
    windows = window_partition_reference(x.detach(), ws).requires_grad_()
    assert torch.autograd.gradcheck(
        lambda t: window_reverse(t, ws, H, W), (windows, ), fast_mode=False)


def test_gradcheck_reference_functions():
    x = torch.randn(2, 9, 13, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: window_partition_reference(t, 7),
                                    (x, ))
    windows = torch.randn(8, 49, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda t: window_reverse_reference(t, 7, 9, 13), (windows, ))


@requires_ext
def test_gradients_of_padding(extension_path):
    # Padding positions: no gradient flows into x from them, and the
    # gradient of window_reverse is zero there.
    x = torch.randn(1, 3, 2, 1, requires_grad=True)
    window_partition(x, 7).sum().backward()
    assert torch.equal(x.grad, torch.ones_like(x))
    windows = torch.randn(1, 49, 1, requires_grad=True)
    window_reverse(windows, 7, 3, 2).sum().backward()
    assert windows.grad.sum().item() == 6
    assert torch.equal(windows.grad.view(7, 7)[:3, :2], torch.ones(3, 2))


@pytest.mark.parametrize('path', ['extension_path', 'reference_path'])
def test_double_backward(path, request):
    if path == 'extension_path' and not EXT_AVAILABLE and not REQUIRE_EXT:
        pytest.skip('mmscalable._ext is not built')
    request.getfixturevalue(path)
    ws, H, W = 7, 9, 13
    x = torch.randn(2, H, W, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradgradcheck(lambda t: window_partition(t, ws),
                                        (x, ))
    windows = torch.randn(
        8, ws * ws, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradgradcheck(lambda t: window_reverse(t, ws, H, W),
                                        (windows, ))


# --------------------------------------------------------------------------
# Registration: opcheck, fake tensors, torch.compile
# --------------------------------------------------------------------------


@requires_ext
@requires_fake_kernels
@pytest.mark.parametrize('shape', [(2, 9, 13, 3, 7), (1, 4, 4, 2, 2),
                                   (1, 3, 2, 2, 7)])
def test_ops_pass_opcheck(shape):
    # Schema, fake implementation, autograd registration and their
    # agreement with the kernels.
    B, H, W, C, ws = shape
    _ext()
    x = _random_map(shape, torch.float64).requires_grad_()
    torch.library.opcheck(torch.ops.mmscalable.window_partition.default,
                          (x, ws))
    windows = window_partition_reference(x.detach(), ws).requires_grad_()
    torch.library.opcheck(torch.ops.mmscalable.window_reverse.default,
                          (windows, ws, H, W))


@requires_ext
@requires_fake_kernels
def test_fake_tensors(extension_path):
    from torch._subclasses.fake_tensor import FakeTensorMode
    with FakeTensorMode() as mode:
        x = mode.from_tensor(torch.randn(2, 9, 13, 5))
        windows = window_partition(x, 7)
        assert windows.shape == (8, 49, 5)
        assert window_reverse(windows, 7, 9, 13).shape == (2, 9, 13, 5)


@requires_ext
def test_compile_traces_the_reference(extension_path):
    # Under torch.compile the window ops take their references, which the
    # compiler fuses with the neighbouring kernels.
    graphs = []

    def backend(graph_module, example_inputs):
        graphs.append(graph_module)
        return graph_module

    def fn(x):
        return window_reverse(window_partition(x, 7) * 2, 7, 9, 13)

    x = torch.randn(2, 9, 13, 5)
    out = torch.compile(fn, backend=backend, fullgraph=True)(x)
    assert torch.equal(out, 2 * x)
    assert not any('mmscalable' in str(node.target)
                   for node in graphs[0].graph.nodes)


# --------------------------------------------------------------------------
# Argument errors
# --------------------------------------------------------------------------


@pytest.mark.parametrize('path', ['extension_path', 'reference_path'])
def test_bad_arguments(path, request):
    if path == 'extension_path' and not EXT_AVAILABLE and not REQUIRE_EXT:
        pytest.skip('mmscalable._ext is not built')
    request.getfixturevalue(path)
    with pytest.raises(ValueError, match='4-D'):
        window_partition(torch.randn(9, 13, 5), 7)
    with pytest.raises(ValueError, match='window_size must be >= 1'):
        window_partition(torch.randn(1, 9, 13, 5), 0)
    with pytest.raises(TypeError, match='window_size must be an int'):
        window_partition(torch.randn(1, 9, 13, 5), 7.0)
    with pytest.raises(ValueError, match='3-D windows'):
        window_reverse(torch.randn(2, 4, 49, 5), 7, 9, 13)
    with pytest.raises(ValueError, match='window_size must be >= 1'):
        window_reverse(torch.randn(4, 49, 5), 0, 9, 13)
    # 9 x 13 with ws=7 needs 2 x 2 = 4 windows per image; 6 is no multiple.
    with pytest.raises(ValueError, match='not a multiple of the 4 windows'):
        window_reverse(torch.randn(6, 49, 5), 7, 9, 13)
    with pytest.raises(ValueError, match='window_size \\*\\* 2 = 49'):
        window_reverse(torch.randn(4, 48, 5), 7, 9, 13)


@requires_ext
def test_bad_arguments_compiled_front():
    # The C++ front validates on its own, for callers of
    # torch.ops.mmscalable; it raises RuntimeError (TORCH_CHECK) for every
    # problem.
    with pytest.raises(RuntimeError, match='4-D'):
        _partition_op(torch.randn(9, 13, 5), 7)
    with pytest.raises(RuntimeError, match='window_size must be >= 1'):
        _partition_op(torch.randn(1, 9, 13, 5), 0)
    with pytest.raises(RuntimeError, match='3-D windows'):
        _reverse_op(torch.randn(2, 4, 49, 5), 7, 9, 13)
    with pytest.raises(RuntimeError, match='not a multiple of the 4 windows'):
        _reverse_op(torch.randn(6, 49, 5), 7, 9, 13)
    with pytest.raises(RuntimeError, match='window_size \\*\\* 2 = 49'):
        _reverse_op(torch.randn(4, 48, 5), 7, 9, 13)
    with pytest.raises(RuntimeError, match='H >= 1 and W >= 1'):
        _reverse_op(torch.randn(4, 49, 5), 7, 0, 13)
    with pytest.raises(RuntimeError, match='float32, float64'):
        _partition_op(torch.zeros(1, 9, 13, 5).int(), 7)


# --------------------------------------------------------------------------
# CUDA
# --------------------------------------------------------------------------


@requires_cuda
@pytest.mark.parametrize('dtype', CUDA_DTYPES)
@pytest.mark.parametrize('shape', SHAPES + [(2, 56, 56, 96, 7)])
def test_cuda_matches_reference(shape, dtype):
    B, H, W, C, ws = shape
    x = _random_map(shape, dtype, 'cuda')
    windows = window_partition(x, ws)
    expected = window_partition_reference(x, ws)
    assert windows.device == x.device and windows.dtype == dtype
    assert torch.equal(windows, expected)
    assert torch.equal(window_reverse(windows, ws, H, W), x)


@requires_cuda_ext
@pytest.mark.parametrize('dtype', CUDA_DTYPES)
@pytest.mark.parametrize('channels', [1, 3, 8, 96])
def test_cuda_kernels_match_reference(dtype, channels):
    # Channel counts that select each copy width (2, 4, 8 and 16 bytes).
    shape = (2, 9, 13, channels, 7)
    x = _random_map(shape, dtype, 'cuda')
    windows = _partition_op(x, 7)
    assert torch.equal(windows, window_partition_reference(x, 7))
    assert torch.equal(_reverse_op(windows, 7, 9, 13), x)
    # A misaligned start (storage offset of one element) must still work.
    offset = torch.randn(x.numel() + 1, device='cuda').to(dtype)[1:]
    x_shifted = offset.view(x.shape)
    assert torch.equal(
        _partition_op(x_shifted, 7), window_partition_reference(x_shifted, 7))


@requires_cuda
@pytest.mark.parametrize('path', ['extension_path', 'reference_path'])
def test_cuda_gradcheck(path, request):
    if path == 'extension_path' and not ext_info()['cuda']:
        pytest.skip('mmscalable._ext was built without CUDA')
    request.getfixturevalue(path)
    ws, H, W = 7, 9, 13
    x = torch.randn(
        2, H, W, 3, dtype=torch.float64, device='cuda', requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: window_partition(t, ws), (x, ))
    windows = torch.randn(
        8, ws * ws, 3, dtype=torch.float64, device='cuda', requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: window_reverse(t, ws, H, W),
                                    (windows, ))


@requires_cuda_ext
@pytest.mark.parametrize('dtype', CUDA_DTYPES)
def test_cuda_empty_batch(extension_path, dtype):
    x = torch.randn(0, 9, 13, 5, device='cuda', dtype=dtype,
                    requires_grad=True)
    windows = window_partition(x, 7)
    assert windows.shape == (0, 49, 5) and windows.device == x.device
    windows.sum().backward()
    assert x.grad.shape == x.shape
    windows = torch.randn(0, 49, 5, device='cuda', dtype=dtype,
                          requires_grad=True)
    out = window_reverse(windows, 7, 9, 13)
    assert out.shape == (0, 9, 13, 5) and out.device == windows.device
    out.sum().backward()
    assert windows.grad.shape == windows.shape


@requires_cuda_ext
@pytest.mark.parametrize('window_size', [1, 7])
def test_cuda_more_maps_than_a_grid_dimension_holds(extension_path,
                                                    window_size):
    # 70000 maps of one pixel and one channel: more images than a launch's
    # grid y or z dimension holds (65535).
    B, ws = 70000, window_size
    x = torch.randn(B, 1, 1, 1, device='cuda', requires_grad=True)
    windows = window_partition(x, ws)
    assert torch.equal(windows, window_partition_reference(x.detach(), ws))
    grad = torch.randn_like(windows)
    windows.backward(grad)
    assert torch.equal(x.grad, grad[:, :1].reshape(B, 1, 1, 1))
    assert torch.equal(window_reverse(windows.detach(), ws, 1, 1), x.detach())
