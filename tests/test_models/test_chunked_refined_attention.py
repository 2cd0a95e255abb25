"""The chunked refined attention (``impl='fast'`` beyond its memory budget)
against the straightforward computation (``impl='reference'``)."""
import pytest
import torch
from random_weights import randomise_

from mmscalable.models import RefinerViT
from mmscalable.models.families import FAMILIES
from mmscalable.models.layers import RefinedAttention
from mmscalable.models.layers.chunked_refined_attention import (
    RefinementSpec, chunked_chained_attention, chunked_refiner_attention,
    rows_per_chunk)

C, HEADS = 24, 4


def randomise(module, seed=0):
    return randomise_(module, seed, scale=0.3)


def attention_chain(depth=4, **kwargs):
    torch.manual_seed(0)
    blocks = torch.nn.ModuleList([
        RefinedAttention(C, HEADS, refine=i % 2 == 1, **kwargs)
        for i in range(depth)
    ])
    return randomise(blocks).double()


def run_chain(blocks, x):
    attn = None
    for block in blocks:
        out, attn = block(x, attn)
        x = x + out
    return x, attn


def assert_same_grads(reference, other, rtol=1e-8, atol=1e-12):
    # A bias followed by a training-mode BatchNorm has no gradient: both are
    # rounding noise then, of the size of the gradients summed into it, so
    # the absolute tolerance is relative to the largest gradient.
    largest = max(p.grad.abs().max().item() for p in reference.parameters())
    for (name, p), (_, q) in zip(reference.named_parameters(),
                                 other.named_parameters()):
        scale = max(p.grad.abs().max().item(), 1e-6)
        err = (p.grad - q.grad).abs().max().item()
        assert err <= rtol * scale + atol * largest, (
            f'{name}: {err} vs {scale} (largest gradient {largest})')


@pytest.mark.parametrize('train', [False, True], ids=['frozen', 'batch'])
# Budget (bytes) and batch for one-row chunks and for two-row chunks (the
# most a budget below one image's 12 x 23 x 23 doubles allows at batch 1).
@pytest.mark.parametrize(
    'budget,batch,rows', [(1, 2, 1), (40_000, 1, 2)], ids=['1row', 'rows'])
def test_chain_matches_straightforward(train, budget, batch, rows):
    """Forward, gradients and running statistics, frozen (eval) and batch
    statistics, with one-row and several-row chunks at an odd size."""
    full = attention_chain(impl='reference').train(train)
    chunked = attention_chain(memory_budget=budget).train(train)
    x = torch.randn(batch, 23, C, dtype=torch.float64, requires_grad=True)
    assert chunked[0]._chunk_rows(x) == rows
    x_chunked = x.detach().clone().requires_grad_()
    out, attn = run_chain(full, x)
    out_chunked, attn_chunked = run_chain(chunked, x_chunked)
    torch.testing.assert_close(out_chunked, out, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(attn_chunked, attn, rtol=1e-10, atol=1e-12)

    grad_out, grad_attn = torch.randn_like(out), torch.randn_like(attn)
    ((out * grad_out).sum() + (attn * grad_attn).sum()).backward()
    ((out_chunked * grad_out).sum() +
     (attn_chunked * grad_attn).sum()).backward()
    torch.testing.assert_close(x_chunked.grad, x.grad, rtol=1e-9, atol=1e-10)
    assert_same_grads(full, chunked)
    for (name, buf), (_, buf_chunked) in zip(full.named_buffers(),
                                             chunked.named_buffers()):
        torch.testing.assert_close(
            buf_chunked.double(), buf.double(), msg=name, rtol=0, atol=1e-10)


def test_chunks_really_are_chunks():
    block = RefinedAttention(C, HEADS, refine=True, memory_budget=1)
    assert block._chunk_rows(torch.zeros(2, 50, C)) == 1
    # Five rows of 8 temporaries of 3 x heads x 50 floats, under one image's
    # 3 x heads x 50 x 50 floats.
    block.memory_budget = 8 * 1 * 3 * HEADS * 50 * 4 * 5
    assert block._chunk_rows(torch.zeros(1, 50, C)) == 5
    assert rows_per_chunk(1, 36, 4201, 4, 256 * 2**20) == 55


def test_fast_chunks_maps_beyond_the_budget():
    block = RefinedAttention(C, HEADS, refine=True, memory_budget=2**20)
    # 3 * heads * N * N * 4 bytes: 1.5 MiB at N = 181, 0.4 MiB at N = 91.
    assert block._chunk_rows(torch.zeros(1, 91, C)) is None
    assert block._chunk_rows(torch.zeros(1, 181, C)) is not None
    assert RefinedAttention(C, HEADS).memory_budget == 256 * 2**20
    block.impl = 'reference'
    assert block._chunk_rows(torch.zeros(1, 181, C)) is None


@pytest.mark.parametrize('train', [False, True], ids=['frozen', 'batch'])
def test_refiner_function_gradcheck(train):
    block = randomise(RefinedAttention(8, 2, refine=True)).double()
    block.train(train)
    spec = block._refinement_spec()
    attn = torch.rand(2, 2, 7, 7, dtype=torch.float64, requires_grad=True)
    value = torch.randn(2, 2, 7, 3, dtype=torch.float64, requires_grad=True)
    # The running statistics change at every call in training mode; the
    # function's output does not depend on them then.
    assert torch.autograd.gradcheck(
        lambda a, v, *p: chunked_refiner_attention(spec, a, v, 3),
        (attn, value, *spec.weights),
        fast_mode=True)


def test_chained_function_gradcheck():
    q, k, v = (
        torch.randn(1, 2, 6, 4, dtype=torch.float64, requires_grad=True)
        for _ in range(3))
    prev = torch.rand(1, 2, 6, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda *t: chunked_chained_attention(*t, 0.5, 4), (q, k, v, prev))
    assert torch.autograd.gradcheck(
        lambda q, k, v: chunked_chained_attention(q, k, v, None, 0.5, 1),
        (q, k, v))


@pytest.mark.parametrize('train', [False, True], ids=['frozen', 'batch'])
def test_backbone_small_budget_matches_reference(train):
    """The whole backbone at an odd size with a memory budget that chunks
    the maps against ``attn_impl='reference'``: outputs, input and parameter
    gradients, from the same state dict."""
    arch = dict(FAMILIES['refiner'].tiny_arch, embed_dims=32)
    kwargs = dict(out_indices=(1, 3), out_type='featmap')
    full = randomise(RefinerViT(arch, attn_impl='reference',
                                **kwargs)).double().train(train)
    chunked = RefinerViT(
        arch, attn_memory_budget=120_000, **kwargs).double().train(train)
    chunked.load_state_dict(full.state_dict())
    x = torch.randn(2, 3, 80, 112, dtype=torch.float64, requires_grad=True)
    # 1 + 5 x 7 tokens: one image's maps, 12 x 36 x 36 doubles, exceed the
    # budget, which holds two rows' temporaries at batch 2.
    tokens = torch.zeros(2, 36, 32, dtype=torch.float64)
    assert chunked.blocks[0].attn._chunk_rows(tokens) == 2
    x_chunked = x.detach().clone().requires_grad_()
    outs, outs_chunked = full(x), chunked(x_chunked)
    for out, out_chunked in zip(outs, outs_chunked):
        assert out.shape == (2, 32, 5, 7)
        torch.testing.assert_close(out_chunked, out, rtol=1e-9, atol=1e-9)
    sum(o.square().sum() for o in outs).backward()
    sum(o.square().sum() for o in outs_chunked).backward()
    torch.testing.assert_close(x_chunked.grad, x.grad, rtol=1e-8, atol=1e-10)
    assert_same_grads(full, chunked, rtol=1e-7, atol=1e-8)


def test_chunked_training_refuses_map_dropout():
    block = RefinedAttention(C, HEADS, memory_budget=1, attn_drop_rate=0.1)
    with pytest.raises(ValueError, match='no attention-map dropout'):
        block(torch.randn(1, 5, C))
    block.eval()
    block(torch.randn(1, 5, C))


def test_bad_impl_and_spec():
    with pytest.raises(ValueError, match='impl must be one of'):
        RefinedAttention(C, HEADS, impl='flash')
    with pytest.raises(ValueError, match='memory_budget must be positive'):
        RefinedAttention(C, HEADS, memory_budget=0)
    block = RefinedAttention(C, HEADS, refine=True)
    expand, depthwise, reduce = block.refinement.layers
    with pytest.raises(ValueError, match='3x3 depthwise'):
        RefinementSpec(expand.conv,
                       torch.nn.Conv2d(12, 12, 5, padding=2, bias=False),
                       reduce.conv, [expand.norm] * 4, [None] * 2, 1.)
