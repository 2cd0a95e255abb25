"""RefinedAttention (Refiner-ViT) against a brute-force computation, with
``impl='reference'`` and ``impl='fast'`` (whole maps and, with a small
memory budget, chunks)."""
import re

import pytest
import torch
import torch.nn.functional as F

from mmscalable.models import RefinedAttention, RefinerViT
from mmscalable.registry import MODELS

IMPLS = pytest.mark.parametrize(
    'impl', [
        dict(impl='reference'),
        dict(impl='fast'),
        dict(impl='fast', memory_budget=1)
    ],
    ids=['reference', 'fast', 'fast-chunked'])


def _randomize_norms(module):
    with torch.no_grad():
        for name, buf in module.named_buffers():
            if name.endswith('running_mean'):
                buf.copy_(torch.randn_like(buf) * 0.1)
            elif name.endswith('running_var'):
                buf.copy_(torch.rand_like(buf) + 0.5)
        for name, param in module.named_parameters():
            param.add_(torch.randn_like(param) * 0.05)


def _bn_eval(x, bn):
    return F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias,
                        False, 0., bn.eps)


def _refined_brute_force(attn_module, x, prev):
    """d^-0.5 * BN(A + R(A)) @ V, with every conv written out."""
    B, N, C = x.shape
    H, d = attn_module.num_heads, attn_module.head_dims
    layers = attn_module.refinement.layers
    r = prev
    for i, layer in enumerate(layers):
        conv = layer.conv
        r = F.conv2d(r, conv.weight, None, 1, conv.padding, 1, conv.groups)
        r = _bn_eval(r, layer.bn)
        if i < 2:
            r = r.clamp(0, 6)  # ReLU6
    refined = _bn_eval(prev + r, attn_module.refined_norm) * d**-0.5
    v = attn_module.v(x).view(B, N, H, d)
    out = torch.einsum('bhnm,bmhd->bnhd', refined, v).reshape(B, N, C)
    return attn_module.proj(out)


def _attention_brute_force(attn_module, x, prev):
    B, N, C = x.shape
    H, d = attn_module.num_heads, attn_module.head_dims
    q, k, v = attn_module.qkv(x).view(B, N, 3, H, d).unbind(2)
    logits = torch.einsum('bnhd,bmhd->bhnm', q, k) * d**-0.5
    attn = logits.softmax(-1)
    if prev is not None:
        attn = attn + prev * d**-0.5
    out = torch.einsum('bhnm,bmhd->bnhd', attn, v).reshape(B, N, C)
    return attn_module.proj(out), attn


@IMPLS
@pytest.mark.parametrize('with_prev', [False, True])
def test_attention_block_matches_brute_force(with_prev, impl):
    torch.manual_seed(0)
    module = RefinedAttention(48, 4, **impl).eval()
    x = torch.randn(2, 37, 48)
    prev = torch.rand(2, 4, 37, 37).softmax(-1) if with_prev else None
    with torch.no_grad():
        out, passed_on = module(x, prev)
        expected, expected_map = _attention_brute_force(module, x, prev)
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(passed_on, expected_map, rtol=1e-4, atol=1e-6)


@IMPLS
def test_refiner_block_matches_brute_force_and_passes_the_map_on(impl):
    torch.manual_seed(0)
    module = RefinedAttention(48, 4, refine=True, **impl)
    _randomize_norms(module)
    module.eval()
    x = torch.randn(2, 26, 48)
    prev = torch.rand(2, 4, 26, 26).softmax(-1)
    with torch.no_grad():
        out, passed_on = module(x, prev)
        expected = _refined_brute_force(module, x, prev)
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-5)
    assert passed_on is prev  # the unrefined map goes on


def test_gradients_reach_every_parameter():
    attention = RefinedAttention(32, 4).train()
    refiner = RefinedAttention(32, 4, refine=True).train()
    x = torch.randn(2, 10, 32, requires_grad=True)
    out, attn = attention(x)
    out2, _ = refiner(out, attn)
    out2.square().mean().backward()
    for module in (attention, refiner):
        missing = [n for n, p in module.named_parameters() if p.grad is None]
        assert not missing
    assert x.grad is not None


def test_registered_and_bad_input():
    module = MODELS.build(
        dict(
            type='mmscalable.RefinedAttention',
            embed_dims=24,
            num_heads=3,
            refine=True))
    x = torch.randn(1, 5, 24)
    with pytest.raises(ValueError, match='needs the attention map'):
        module(x)
    with pytest.raises(
            ValueError, match=r'prev_attn must have shape '
            r'\(1, 3, 5, 5\)'):
        module(x, torch.rand(1, 3, 6, 6))
    with pytest.raises(ValueError, match='divisible by num_heads'):
        RefinedAttention(25, 3)


@pytest.mark.parametrize('old,hint', [
    ('full', "'full' is now 'reference'"),
    ('auto', "'auto' is now 'fast'"),
    ('chunked', 'use a smaller memory_budget (backbones: attn_memory_budget)'),
])
@pytest.mark.parametrize('backbone', [False, True])
def test_old_impl_names_say_what_to_use(old, hint, backbone):
    match = re.escape(f"impl must be one of ('fast', 'reference'), got "
                      f"{old!r}: ") + '.*' + re.escape(hint)
    with pytest.raises(ValueError, match=match):
        if backbone:
            RefinerViT(
                arch=dict(embed_dims=24, depth=2, num_heads=3), attn_impl=old)
        else:
            RefinedAttention(24, 3, impl=old)
