"""Refiner-ViT: backbone, head and key conversion (straightforward path)."""
import pytest
import torch
from mmengine.config import Config

from mmscalable.models import RefinerViT
from mmscalable.models.checkpoint import (refiner_mmcls_to_official,
                                          refiner_official_to_mmcls)

TINY = dict(embed_dims=48, depth=4, num_heads=4)
CLS_CONFIG = 'configs/refiner/refiner-vit-s_8xb128_in1k.py'


def tiny(**kwargs):
    model = RefinerViT(arch=TINY, **kwargs)
    model.init_weights()
    return model


# The released counts with both heads (class and auxiliary token heads).
@pytest.mark.parametrize('arch,expected',
                         [('s', 25_408_656), ('m', 55_450_932),
                          ('l', 81_150_192)])
def test_param_counts_with_official_heads(arch, expected):
    backbone = RefinerViT(arch=arch)
    dims = backbone.embed_dims
    heads = 2 * (dims * 1000 + 1000)
    assert sum(p.numel() for p in backbone.parameters()) + heads == expected


def test_blocks_alternate_attention_and_refinement():
    model = tiny()
    assert [b.attn.refine for b in model.blocks] == [False, True] * 2
    assert hasattr(model.blocks[0].attn, 'qkv')
    assert hasattr(model.blocks[1].attn, 'v')


@pytest.mark.parametrize('size', [(224, 224), (33, 47), (96, 160)])
def test_output_shapes_and_position_interpolation(size):
    model = tiny().eval()
    with torch.no_grad():
        (tokens, ) = model(torch.randn(2, 3, *size))
    # Stem: 7x7 stride 2 pad 3, then an 8x8 stride-8 projection.
    h, w = (((s - 1) // 2 + 1) // 8 for s in size)
    assert tokens.shape == (2, 1 + h * w, 48)
    assert torch.isfinite(tokens).all()
    pos = model.resized_pos_embed((h, w))
    assert pos.shape == (1, 1 + h * w, 48)
    # The class token's embedding is kept; corners are kept (aligned).
    torch.testing.assert_close(pos[:, 0], model.pos_embed[:, 0])
    torch.testing.assert_close(pos[:, 1], model.pos_embed[:, 1])


def test_pos_embed_of_another_size_is_resized_on_every_load(tmp_path):
    from mmengine.runner import load_checkpoint
    torch.manual_seed(0)
    source = tiny(img_size=224)
    state = source.state_dict()
    path = tmp_path / 'refiner-224.pth'
    torch.save({'state_dict': state}, path)
    expected = source.resized_pos_embed((28, 28))
    assert expected.shape == (1, 1 + 28 * 28, 48)

    plain = RefinerViT(arch=TINY, img_size=448)
    plain.load_state_dict(state, strict=True)
    # The caller's dict keeps its tensor.
    assert state['pos_embed'].shape == (1, 1 + 14 * 14, 48)
    wrapped = torch.nn.ModuleDict(
        dict(backbone=RefinerViT(arch=TINY, img_size=448)))
    wrapped.load_state_dict({f'backbone.{k}': v for k, v in state.items()})
    runner_loaded = RefinerViT(arch=TINY, img_size=448)
    load_checkpoint(runner_loaded, str(path), strict=True)
    for model in (plain, wrapped.backbone, runner_loaded):
        torch.testing.assert_close(model.pos_embed, expected)
        torch.testing.assert_close(model.blocks[1].attn.v.weight,
                                   source.blocks[1].attn.v.weight)

    # A grid whose sides are unknown is refused.
    wide = RefinerViT(arch=TINY, img_size=(48, 64)).state_dict()
    with pytest.raises(
            ValueError,
            match=r'pos_embed of shape \(1, 13, 48\) is not for a square '
            r'grid of patches; cannot resize it to the 28x28 grid'):
        plain.load_state_dict(wide)


def test_key_rules_round_trip_and_value_projection():
    from mmpretrain.registry import MODELS
    cfg = Config.fromfile(CLS_CONFIG)
    cfg.model.backbone.arch = dict(TINY)
    cfg.model.head.in_channels = 48
    cfg.model.head.num_classes = 10
    model = MODELS.build(cfg.model)
    ours = model.state_dict()
    official = refiner_mmcls_to_official(ours)
    # The released names: refiner blocks keep `attn.qkv` for the values.
    assert 'blocks.1.attn.qkv.weight' in official
    assert 'blocks.1.attn.DLA.conv_exp.weight' in official
    assert 'blocks.0.mlp.scale_channel' in official
    assert {
        'patch_embed.conv1.weight', 'patch_embed.proj.bias', 'cls_token',
        'pos_embed', 'norm.weight', 'head.weight', 'aux_head.weight'
    } <= set(official)
    assert list(refiner_official_to_mmcls(official)) == list(ours)


def test_classifier_loss_and_predict():
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import MODELS
    from mmpretrain.structures import DataSample
    init_default_scope('mmpretrain')
    cfg = Config.fromfile(CLS_CONFIG)
    cfg.model.backbone.arch = dict(TINY)
    cfg.model.head.in_channels = 48
    cfg.model.head.num_classes = 5
    model = MODELS.build(cfg.model)
    model.init_weights()
    inputs = torch.randn(4, 3, 64, 64)
    samples = [DataSample().set_gt_label(i % 5) for i in range(4)]
    assert torch.isfinite(model.loss(inputs, samples)['loss'])
    model.eval()
    with torch.no_grad():
        preds = model.predict(inputs)
    assert preds[0].pred_score.shape == (5, )


@pytest.mark.parametrize('kwargs,match', [
    (dict(arch='xl'), "Unknown RefinerViT arch 'xl'"),
    (dict(arch=dict(embed_dims=48)), 'must be a dict with keys'),
])
def test_bad_config_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        RefinerViT(**kwargs)
