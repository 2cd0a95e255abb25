import pytest
import torch
import torch.nn.functional as F

from mmscalable.models import (InteractiveWindowAttention,
                               ScalableSelfAttention, ScalableViT)
from mmscalable.models.checkpoint import (scalablevit_mmcls_to_official,
                                          scalablevit_official_to_mmcls)
from mmscalable.models.families import FAMILIES

# Deeper stages and a channel ratio below one.
TINY = dict(
    FAMILIES['scalablevit'].tiny_arch,
    depths=[2, 2, 3, 2],
    channel_ratios=[1.25, 0.5, 1, 1])


def tiny(**kwargs):
    kwargs.setdefault('drop_path_rate', 0.)
    model = ScalableViT(arch=TINY, **kwargs)
    model.init_weights()
    return model


def num_params(module):
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize('arch,expected', [('s', 32.00), ('b', 81.88),
                                           ('l', 109.29)])
def test_param_counts_with_official_head(arch, expected):
    backbone = ScalableViT(arch=arch, out_indices=(3, ))
    dims = backbone.embed_dims[-1]
    # The official head: Linear(C4, 4096), LayerNorm, GELU, Linear(4096, 1000)
    head = dims * 4096 + 4096 + 2 * 4096 + 4096 * 1000 + 1000
    assert round((num_params(backbone) + head) / 1e6, 2) == expected


def test_shared_kv_gives_paper_count_for_s():
    backbone = ScalableViT(arch='s', out_indices=(3, ), shared_kv=True)
    head = 512 * 4096 + 4096 + 2 * 4096 + 4096 * 1000 + 1000
    assert round((num_params(backbone) + head) / 1e6, 1) == 32.4


def test_small_arch_at_224_and_detection_size():
    model = ScalableViT(arch='s').eval()
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 224, 224))
    assert [tuple(o.shape) for o in outs] == [(1, 64, 56, 56),
                                              (1, 128, 28, 28),
                                              (1, 256, 14, 14),
                                              (1, 512, 7, 7)]
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 800, 1333))
    assert [tuple(o.shape[2:]) for o in outs] == [(200, 334), (100, 167),
                                                  (50, 84), (25, 42)]


def test_out_indices_and_classification_mode():
    model = tiny(out_indices=(1, 3))
    outs = model(torch.randn(1, 3, 64, 64))
    assert [o.shape[1] for o in outs] == [32, 64]
    assert not hasattr(model, 'norm0') and hasattr(model, 'norm3')


def _window_attention_brute_force(attn, x, hw):
    """IWSA computed token by token over the real tokens of each window."""
    B, N, C = x.shape
    H, W = hw
    ws, heads = attn.window_size, attn.num_heads
    qkv = attn.qkv(x).view(B, H, W, 3, heads, C // heads)
    out = torch.zeros(B, H, W, C)
    for i in range(0, H, ws):
        for j in range(0, W, ws):
            win = qkv[:, i:i + ws, j:j + ws].flatten(1, 2)
            q, k, v = win.permute(2, 0, 3, 1, 4)  # 3 x (B, heads, L, d)
            w = (q @ k.transpose(-1, -2) * attn.scale).softmax(-1)
            o = (w @ v).transpose(1, 2).flatten(2)
            out[:, i:i + ws, j:j + ws] = o.view(B, min(ws, H - i),
                                                min(ws, W - j), C)
    v_map = qkv[..., 2, :, :].flatten(3).permute(0, 3, 1, 2)
    local = attn.local_interaction(v_map).flatten(2).transpose(1, 2)
    return attn.proj(out.view(B, N, C) + local)


@pytest.mark.parametrize('hw', [(14, 14), (9, 13), (3, 5)])
def test_iwsa_padded_windows_attend_only_real_tokens(hw):
    attn = InteractiveWindowAttention(24, 3, window_size=7).eval()
    x = torch.randn(2, hw[0] * hw[1], 24)
    with torch.no_grad():
        torch.testing.assert_close(
            attn(x, hw), _window_attention_brute_force(attn, x, hw),
            rtol=1e-4, atol=1e-5)


def test_iwsa_padding_mask_is_kept_per_size():
    attn = InteractiveWindowAttention(24, 3, window_size=7)
    assert attn.padding_mask((14, 14), torch.device('cpu')) is None
    mask = attn.padding_mask((9, 13), torch.device('cpu'))
    assert attn.padding_mask((9, 13), torch.device('cpu')) is mask
    other = attn.padding_mask((10, 13), torch.device('cpu'))
    assert other is not mask and other.shape == mask.shape
    # 9 rows: the second window row has 2 real rows of 7.
    assert mask.view(2, 2, 7, 7)[1, 0, 2:].sum() == 0
    # Built first under inference_mode, used by a training step after.
    x = torch.randn(1, 5 * 6, 24)
    with torch.inference_mode():
        attn(x, (5, 6))
    attn(x.requires_grad_(), (5, 6)).sum().backward()
    assert x.grad is not None
    for i in range(attn.MAX_CACHED_MASKS + 4):
        attn.padding_mask((8 + i, 8), torch.device('cpu'))
    assert len(attn._padding_masks) == attn.MAX_CACHED_MASKS


@pytest.mark.parametrize('hw', [(16, 16), (9, 13), (3, 2)])
def test_ssa_reduction_on_any_size(hw):
    attn = ScalableSelfAttention(32, 2, spatial_ratio=4,
                                 channel_ratio=1.25).eval()
    x = torch.randn(2, hw[0] * hw[1], 32)
    out = attn(x, hw)
    assert out.shape == x.shape and torch.isfinite(out).all()
    # Zero padding to a multiple of r_n: the context equals that of the
    # explicitly padded map.
    ph, pw = -hw[0] % 4, -hw[1] % 4
    x_map = x.transpose(1, 2).reshape(2, 32, *hw)
    padded = F.pad(x_map, (0, pw, 0, ph))
    expected = attn.act(attn.norm(attn.channel_projection(
        attn.spatial_reduction(padded)).flatten(2).transpose(1, 2)))
    torch.testing.assert_close(attn.reduce_context(x, hw), expected)
    # The border keys are not masked: each is a whole r_n x r_n window, and
    # the real tokens in it (which a reduction without padding would drop)
    # change the context and the output.
    if ph or pw:
        moved = x.clone()
        moved[:, -1] += 1.
        assert not torch.allclose(attn.reduce_context(moved, hw),
                                  attn.reduce_context(x, hw))
        assert not torch.allclose(attn(moved, hw)[:, 0], out[:, 0])


def test_converter_round_trip():
    model = tiny(out_indices=(3, ))
    state = {f'backbone.{k}': v for k, v in model.state_dict().items()}
    official = scalablevit_mmcls_to_official(state)
    assert 'patch_embeds.0.proj.weight' in official
    assert 'stages.0.0.attn.lim_func.weight' in official
    assert 'stages.0.1.attn.reduction.0.weight' in official
    assert 'pos_block.2.proj.0.bias' in official
    assert 'norm.weight' in official
    back = scalablevit_official_to_mmcls(official)
    assert list(back) == list(state)
    assert all(back[k] is state[k] for k in state)


def test_converter_names_unknown_keys():
    with pytest.raises(KeyError, match='blocks.0.attn.unknown'):
        scalablevit_official_to_mmcls({'blocks.0.attn.unknown': torch.ones(1)})


@pytest.mark.parametrize('kwargs,match', [
    (dict(arch='xl'), "Unknown ScalableViT arch 'xl'"),
    (dict(arch=dict(embed_dims=[1, 2])), 'must be a dict with keys'),
    (dict(arch='s', out_indices=(4, )), 'out_indices'),
    (dict(arch='s', frozen_stages=7), 'frozen_stages'),
])
def test_bad_config_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ScalableViT(**kwargs)


@pytest.mark.parametrize('attn_type', ['iwsa', 'ssa'])
def test_block_eval_forward_equals_training_forward_without_dropout(
        attn_type):
    """Eval-mode blocks call the MLP's layers directly; with no dropout the
    result is that of FFN's own forward, which training mode runs."""
    from mmscalable.models.backbones.scalablevit import ScalableViTBlock
    torch.manual_seed(0)
    block = ScalableViTBlock(
        32, 2, attn_type=attn_type, spatial_ratio=2, channel_ratio=1.25)
    x = torch.randn(2, 9 * 11, 32)
    with torch.no_grad():
        expected = block.train()(x, (9, 11))
        out = block.eval()(x, (9, 11))
    torch.testing.assert_close(out, expected, rtol=0, atol=0)
    # A layer swapped in afterwards is the one the eval forward calls.
    block.ffn.layers[1] = torch.nn.Linear(128, 32)
    with torch.no_grad():
        assert not torch.equal(block(x, (9, 11)), out)


@pytest.mark.parametrize('dtype', [torch.float32, torch.bfloat16])
@pytest.mark.parametrize('hw', [(14, 21), (9, 13)])
def test_iwsa_cpu_fast_path_matches_reference(dtype, hw):
    """The CPU's fast path (head-split windows and batched matmuls) against
    the reference, unpadded and padded, under autocast too."""
    torch.manual_seed(0)
    fast = InteractiveWindowAttention(32, 4, window_size=7).eval()
    reference = InteractiveWindowAttention(
        32, 4, window_size=7, impl='reference').eval()
    reference.load_state_dict(fast.state_dict())
    x = torch.randn(2, hw[0] * hw[1], 32)
    with torch.no_grad(), torch.autocast(
            'cpu', dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
        out = fast(x, hw)
        expected = reference(x, hw)
    assert out.dtype == expected.dtype and out.is_contiguous()
    tol = 1e-5 if dtype == torch.float32 else 3e-2
    torch.testing.assert_close(
        out.float(), expected.float(), rtol=tol, atol=tol)
