"""The fast attention paths compute what the reference paths compute."""
import contextlib

import pytest
import torch
from random_weights import randomise_

from mmscalable.models import (GroupMixAttention, GroupMixFormer,
                               InteractiveWindowAttention, RefinedAttention,
                               RefinerViT, ScalableSelfAttention, ScalableViT)
from mmscalable.models.families import FAMILIES
from mmscalable.models.layers import dispatch
from mmscalable.models.layers.attention_impl import explicit_attention
from mmscalable.models.layers.fused_convs import (InferenceCache,
                                                  fold_batch_norm)

# The families' tiny archs, deeper, with a channel ratio below one and
# wider GroupMixFormer stages.
SCALABLE_TINY = dict(
    FAMILIES['scalablevit'].tiny_arch,
    depths=[2, 2, 2, 2],
    channel_ratios=[1.25, 0.5, 1, 1])
GROUPMIX_TINY = dict(
    FAMILIES['groupmixformer'].tiny_arch,
    embed_dims=[40, 80, 80, 120],
    depths=[1, 2, 1, 1],
    mlp_ratios=[4, 4, 2, 2])
REFINER_TINY = dict(
    FAMILIES['refiner'].tiny_arch, embed_dims=32, depth=2, num_heads=2)


@pytest.fixture(params=['cpu-choice', 'gpu-choice'], autouse=True)
def fused_choice(request, monkeypatch):
    """Run every test with the CPU's choices of the fast path and with the
    GPU's (SDPA) forced onto the CPU."""
    if request.param == 'gpu-choice':
        monkeypatch.setattr(dispatch, 'prefers_one_launch',
                            lambda facts: True)
    return request.param


def _randomise(module, seed=0):
    return randomise_(module, seed, scale=0.2, mean_std=0.3)


def _pair(fast, reference_kwargs):
    """The fast module and a reference twin with the same weights."""
    dtype = next(fast.parameters()).dtype
    reference = type(fast)(**reference_kwargs).to(dtype)
    reference.load_state_dict(fast.state_dict(), strict=True)
    return fast, reference


def _outputs_and_grads(module, inputs, forward):
    inputs = [x.detach().clone().requires_grad_() for x in inputs]
    out = forward(module, *inputs)
    outs = out if isinstance(out, (tuple, list)) else [out]
    loss = sum((o * torch.linspace(-1, 1, o.numel(), dtype=o.dtype).view_as(o)
                ).sum() for o in outs)
    loss.backward()
    grads = {n: p.grad for n, p in module.named_parameters()}
    return outs, [x.grad for x in inputs], grads


def _assert_same(fast, reference, inputs, forward, **tol):
    fast_outs, fast_in_grads, fast_grads = _outputs_and_grads(
        fast, inputs, forward)
    ref_outs, ref_in_grads, ref_grads = _outputs_and_grads(
        reference, inputs, forward)
    for a, b in zip(fast_outs, ref_outs):
        torch.testing.assert_close(a, b, **tol)
    for a, b in zip(fast_in_grads, ref_in_grads):
        torch.testing.assert_close(a, b, **tol)
    assert fast_grads.keys() == ref_grads.keys()
    for name in fast_grads:
        assert fast_grads[name] is not None, name
        torch.testing.assert_close(
            fast_grads[name], ref_grads[name], **tol, msg=name)


def _attend(module, x, hw_shape):
    return module(x, hw_shape)


@pytest.mark.parametrize('kwargs', [
    dict(spatial_ratio=1),
    dict(spatial_ratio=2, channel_ratio=1.25),
    dict(spatial_ratio=4, channel_ratio=0.5, shared_kv=True),
])
@pytest.mark.parametrize('hw', [(8, 8), (7, 5)])
def test_ssa_fast_matches_reference(kwargs, hw):
    torch.manual_seed(0)
    init = dict(embed_dims=32, num_heads=2, **kwargs)
    fast, reference = _pair(
        _randomise(ScalableSelfAttention(**init).double()),
        dict(init, impl='reference'))
    x = torch.randn(2, hw[0] * hw[1], 32, dtype=torch.float64)
    _assert_same(fast, reference, [x], lambda m, x: _attend(m, x, hw))


@pytest.mark.parametrize('hw', [(8, 8), (7, 5), (9, 11)])
def test_iwsa_fast_matches_reference(hw):
    torch.manual_seed(0)
    init = dict(embed_dims=24, num_heads=3, window_size=4)
    fast, reference = _pair(
        _randomise(InteractiveWindowAttention(**init).double()),
        dict(init, impl='reference'))
    x = torch.randn(2, hw[0] * hw[1], 24, dtype=torch.float64)
    _assert_same(fast, reference, [x], lambda m, x: _attend(m, x, hw))


@pytest.mark.parametrize('mode', ['train', 'eval', 'norm_eval'])
@pytest.mark.parametrize('hw', [(6, 6), (5, 7)])
def test_gma_fast_matches_reference(mode, hw):
    torch.manual_seed(0)
    init = dict(embed_dims=40)
    fast, reference = _pair(
        _randomise(GroupMixAttention(**init).double()),
        dict(init, impl='reference'))
    for module in (fast, reference):
        module.train(mode != 'eval')
        if mode == 'norm_eval':
            for m in module.modules():
                if isinstance(m, torch.nn.BatchNorm2d):
                    m.eval()
    x = torch.randn(2, hw[0] * hw[1], 40, dtype=torch.float64)
    _assert_same(fast, reference, [x], lambda m, x: _attend(m, x, hw))
    # Batch statistics update the running ones as the per-segment norms do.
    for (name, a), b in zip(fast.named_buffers(), reference.buffers()):
        torch.testing.assert_close(a, b, msg=name)
    if mode == 'train':
        assert fast.token_norm.num_batches_tracked.item() == 1


def test_gma_fast_with_sync_bn_runs_per_segment_norms():
    """Norms other than plain BN keep their own forward (SyncBN syncs)."""
    torch.manual_seed(0)
    fast = _randomise(
        GroupMixAttention(40, norm_cfg=dict(type='GN', num_groups=2)))
    reference = GroupMixAttention(
        40, norm_cfg=dict(type='GN', num_groups=2), impl='reference')
    reference.load_state_dict(fast.state_dict())
    x = torch.randn(2, 20, 40)
    torch.testing.assert_close(fast(x, (4, 5)), reference(x, (4, 5)))


def test_gma_inference_cache_follows_weight_changes():
    torch.manual_seed(0)
    attn = _randomise(GroupMixAttention(40)).eval()
    reference = GroupMixAttention(40, impl='reference').eval()
    x = torch.randn(1, 16, 40)
    with torch.no_grad():
        first = attn(x, (4, 4))
        assert torch.equal(attn(x, (4, 4)), first)
        # In-place changes (load_state_dict, optimiser steps) bump the
        # version counters, so the fused weights are rebuilt.
        _randomise(attn, seed=1)
        second = attn(x, (4, 4))
        reference.load_state_dict(attn.state_dict())
        torch.testing.assert_close(second, reference(x, (4, 4)))
        assert not torch.allclose(first, second)
        # A replaced parameter (here a new Parameter) is a new source.
        conv = attn.crpe.convs[0]
        conv.weight = torch.nn.Parameter(torch.randn_like(conv.weight))
        reference.load_state_dict(attn.state_dict())
        torch.testing.assert_close(attn(x, (4, 4)), reference(x, (4, 4)))


@pytest.mark.parametrize('convert', [
    lambda m: m.double(), lambda m: m.bfloat16(),
    lambda m: m.to(torch.float64), lambda m: m.float()
])
def test_gma_inference_cache_follows_dtype_changes(convert):
    """Conversions that replace a parameter's data without moving its
    version counter (``module.double()``, ``.to()``) rebuild the cache."""
    torch.manual_seed(0)
    attn = _randomise(GroupMixAttention(40)).eval()
    x = torch.randn(1, 16, 40)
    with torch.no_grad():
        attn(x, (4, 4))  # fills the cache in float32
        convert(attn)
        fresh = convert(GroupMixAttention(40).eval())
        fresh.load_state_dict(attn.state_dict())
        dtype = next(attn.parameters()).dtype
        out = attn(x.to(dtype), (4, 4))
        assert out.dtype == dtype
        assert torch.equal(out, fresh(x.to(dtype), (4, 4)))


def test_gma_bf16_autocast_close_to_fp32():
    torch.manual_seed(0)
    attn = _randomise(GroupMixAttention(40)).eval()
    x = torch.randn(2, 36, 40)
    with torch.no_grad():
        expected = attn(x, (6, 6))
        with torch.autocast('cpu', dtype=torch.bfloat16):
            out = attn(x, (6, 6))
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(
        out.float(), expected, rtol=0.05, atol=0.05 * expected.abs().max())


@pytest.mark.parametrize('train', [True, False])
@pytest.mark.parametrize('backbone,arch,size', [
    (ScalableViT, SCALABLE_TINY, (75, 61)),
    (GroupMixFormer, GROUPMIX_TINY, (45, 38)),
])
def test_backbone_fast_matches_reference(backbone, arch, size, train):
    """Outputs, gradients and BatchNorm statistics, at odd sizes."""
    torch.manual_seed(0)
    fast = _randomise(backbone(arch=arch, drop_path_rate=0.).double())
    reference = backbone(
        arch=arch, drop_path_rate=0., attn_impl='reference').double()
    reference.load_state_dict(fast.state_dict())
    fast.train(train)
    reference.train(train)
    x = torch.randn(2, 3, *size, dtype=torch.float64)
    _assert_same(fast, reference, [x], lambda m, x: m(x))
    for (name, a), b in zip(fast.named_buffers(), reference.buffers()):
        torch.testing.assert_close(a, b, msg=name)


@pytest.mark.parametrize('build', [
    lambda: ScalableSelfAttention(32, 2, impl='flash'),
    lambda: InteractiveWindowAttention(32, 2, impl='flash'),
    lambda: GroupMixAttention(40, impl='flash'),
    lambda: ScalableViT(arch=SCALABLE_TINY, attn_impl='flash'),
    lambda: GroupMixFormer(arch=GROUPMIX_TINY, attn_impl='flash'),
    lambda: RefinedAttention(32, 2, impl='flash'),
    lambda: RefinerViT(arch=REFINER_TINY, attn_impl='flash'),
])
def test_unknown_impl_is_named(build):
    with pytest.raises(ValueError, match="impl must be one of .*'flash'"):
        build()


def test_one_launch_rule(fused_choice):
    """'fast' runs the fused formulations (SDPA) where the device prefers
    them; 'reference' never does."""
    x = torch.zeros(1, 16, 8)
    fast = ScalableSelfAttention(8, 2, spatial_ratio=2)
    reference = ScalableSelfAttention(8, 2, spatial_ratio=2,
                                      impl='reference')
    assert dispatch.select_backend(reference, x) == 'reference'
    assert dispatch.select_backend(fast, x) == (
        'sdpa' if fused_choice == 'gpu-choice' else 'explicit')


def test_gma_fast_needs_parameter_free_activation():
    with pytest.raises(ValueError, match='parameter-free'):
        GroupMixAttention(40, act_cfg=dict(type='PReLU'))
    GroupMixAttention(40, act_cfg=dict(type='PReLU'), impl='reference')


def test_helpers():
    x = torch.randn(1, 4, 9, 9)
    norm = _randomise(torch.nn.BatchNorm2d(4)).eval()
    scale, shift = fold_batch_norm(norm)
    torch.testing.assert_close(
        x * scale.view(-1, 1, 1) + shift.view(-1, 1, 1), norm(x))

    q, k, v = torch.randn(3, 2, 2, 5, 8).unbind(0)
    mask = torch.tensor([True, True, False, True, False]).view(1, 1, 1, 5)
    torch.testing.assert_close(
        explicit_attention(q, k, v, 0.3, torch.nn.Identity(), mask),
        torch.nn.functional.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, scale=0.3))

    cache, calls = InferenceCache(), []
    source = torch.zeros(3)

    def build():
        calls.append(1)
        return source + 1

    with torch.no_grad():
        cache.get([source], build)
        cache.get([source], build)
        assert len(calls) == 1
        source.add_(1)
        assert torch.equal(cache.get([source], build), torch.full((3, ), 2.))
    assert len(calls) == 2
    cache.get([source], build)  # recording autograd: always rebuilt
    assert len(calls) == 3


def _autocast_outputs_and_grads(module, x, dtype):
    """Outputs under autocast to ``dtype`` (fp32: none) and the gradients of
    a weighted sum of them: of the input (``'input'``) and of every
    parameter."""
    module.zero_grad(set_to_none=True)
    x = x.detach().clone().requires_grad_()
    # fp32 without an autocast context: torch 2.1 refuses a CPU autocast
    # to any dtype but bfloat16, even a disabled one.
    autocast = (
        contextlib.nullcontext() if dtype == torch.float32 else
        torch.autocast(x.device.type, dtype=dtype))
    with autocast:
        outs = module(x)
    loss = sum(
        (o.float() *
         torch.linspace(-1, 1, o.numel(), device=o.device).view_as(o)).sum()
        for o in outs)
    loss.backward()
    grads = {'input': x.grad}
    grads.update((name, p.grad) for name, p in module.named_parameters())
    return [o.detach() for o in outs], grads


def _assert_accurate(name, fast, reference, truth, dtype, scale):
    """``fast`` is as close to ``truth`` (the reference in fp32) as fp32
    allows, or in bf16 about as close as the reference at that precision:
    within 4x its error (folded BatchNorms are up to 2x less accurate), plus
    1e-4 of ``scale`` for tensors that are zero in theory (the gradient of
    a key bias, or of a bias before a training-mode BatchNorm)."""
    error = (fast.float() - truth).norm().item()
    if dtype == torch.float32:
        bound = 1e-4 * truth.norm().item() + 1e-6 * scale
    else:
        bound = 4 * (reference.float() - truth).norm().item() + 1e-4 * scale
    assert error <= bound, f'{name}: error {error:.3g} > {bound:.3g}'


@pytest.fixture
def no_tf32():
    """fp32 is fp32 on a GPU too (TF32 off), as in the benchmark's
    agreement check."""
    flags = (torch.backends.cuda.matmul.allow_tf32,
             torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    yield
    (torch.backends.cuda.matmul.allow_tf32,
     torch.backends.cudnn.allow_tf32) = flags


@pytest.mark.parametrize('device', [
    'cpu',
    pytest.param(
        'cuda',
        marks=pytest.mark.skipif(
            not torch.cuda.is_available(), reason='needs a GPU')),
])
@pytest.mark.parametrize('dtype', [
    pytest.param(torch.float32, id='fp32'),
    pytest.param(torch.bfloat16, id='bf16'),
])
@pytest.mark.parametrize('build', [
    pytest.param(
        lambda impl: ScalableViT(
            arch=SCALABLE_TINY, drop_path_rate=0., attn_impl=impl),
        id='scalablevit'),
    pytest.param(
        lambda impl: GroupMixFormer(
            arch=GROUPMIX_TINY, drop_path_rate=0., attn_impl=impl),
        id='groupmixformer'),
])
def test_fast_matches_reference_on_device(build, dtype, device, fused_choice,
                                          no_tf32):
    """The fused choices (on a GPU: SDPA with masks at odd sizes; the
    Group-Mix depthwise op) on fresh random inputs, in eval and training mode (no drop path:
    its random draws differ between two models): the outputs, and the
    gradients of the input and of every parameter, against the reference in
    fp32."""
    if device == 'cuda' and fused_choice == 'cpu-choice':
        pytest.skip('a GPU makes the GPU choices either way')
    torch.manual_seed(0)
    fast = _randomise(build('fast')).to(device)
    reference = build('reference').to(device)
    reference.load_state_dict(fast.state_dict())
    x = torch.randn(2, 3, 97, 75, device=device)
    for train in (False, True):
        fast.train(train)
        reference.train(train)
        truth_outs, truth_grads = _autocast_outputs_and_grads(
            reference, x, torch.float32)
        outs, grads = _autocast_outputs_and_grads(fast, x, dtype)
        ref_outs, ref_grads = (
            _autocast_outputs_and_grads(reference, x, dtype)
            if dtype != torch.float32 else (truth_outs, truth_grads))
        scale = max(t.norm().item() for t in truth_outs)
        for i, truth in enumerate(truth_outs):
            _assert_accurate(f'output {i} (train={train})', outs[i],
                             ref_outs[i], truth, dtype, scale)
        assert grads.keys() == truth_grads.keys()
        scale = max(t.norm().item() for t in truth_grads.values())
        for name, truth in truth_grads.items():
            assert grads[name] is not None, name
            _assert_accurate(f'gradient of {name} (train={train})',
                             grads[name], ref_grads[name], truth, dtype, scale)
