"""Refiner-ViT: backbone, head and key conversion (straightforward path)."""
import pytest
import torch
from mmengine.config import Config
from mmpretrain.structures import DataSample

from mmscalable.models import RefinerViT
from mmscalable.models.checkpoint import (refiner_mmcls_to_official,
                                          refiner_official_to_mmcls)
from mmscalable.models.families import FAMILIES

TINY = dict(FAMILIES['refiner'].tiny_arch)
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
    # The input is padded to a multiple of the 16-pixel patches.
    h, w = (-(-s // 16) for s in size)
    assert tokens.shape == (2, 1 + h * w, 48)
    assert torch.isfinite(tokens).all()
    pos = model.resized_pos_embed((h, w))
    assert pos.shape == (1, 1 + h * w, 48)
    # The class token's embedding is kept; the patches' are resized
    # bicubically without aligned corners (the released fine-tuning code).
    torch.testing.assert_close(pos[:, 0], model.pos_embed[:, 0])
    grid = model.pos_embed[:, 1:].transpose(1, 2).reshape(1, 48, 14, 14)
    expected = torch.nn.functional.interpolate(
        grid, (h, w), mode='bicubic', align_corners=False)
    torch.testing.assert_close(pos[:, 1:],
                               expected.flatten(2).transpose(1, 2))


def test_every_pixel_is_seen():
    # 40 x 42 pixels: without padding the stem would drop the last 8 rows
    # and 10 columns.
    model = tiny(out_type='featmap').eval()
    x = torch.randn(1, 3, 40, 42)
    moved = x.clone()
    moved[..., -1, -1] += 10.
    with torch.no_grad():
        (out, ) = model(x)
        (out_moved, ) = model(moved)
    assert out.shape[-2:] == (3, 3)
    assert not torch.allclose(out[..., -1, -1], out_moved[..., -1, -1])


@pytest.mark.parametrize('out_type', ['featmap', 'raw'])
def test_padding_masked_out_gives_the_features_alone(out_type):
    # Frozen norms, as the dense configs train: an image's features must not
    # depend on the batch it is padded into.
    model = tiny(out_type=out_type, out_indices=(1, 3), norm_eval=True)
    model.train()
    small = torch.randn(1, 3, 40, 56)
    large = torch.randn(1, 3, 72, 90)
    batch = torch.zeros(2, 3, 72, 90)
    batch[0, :, :40, :56] = small[0]
    batch[1] = large[0]
    alone = model(small)
    masked = model(batch, valid_shapes=[(40, 56), (72, 90)])
    unmasked = model(batch)
    for out_alone, out_masked, out_unmasked in zip(alone, masked, unmasked):
        if out_type == 'raw':
            # The class token, then the 5 x 6 patch grid in the batch's
            # raster order (3 x 4 patches of the small image).
            grid = out_masked[0, 1:].reshape(5, 6, -1)
            torch.testing.assert_close(out_masked[0, 0], out_alone[0, 0])
            torch.testing.assert_close(grid[:3, :4].reshape(12, -1),
                                       out_alone[0, 1:])
            assert not grid[3:].any() and not grid[:, 4:].any()
            continue
        assert out_masked.shape == (2, 48, 5, 6)
        torch.testing.assert_close(out_masked[:1, :, :3, :4], out_alone)
        assert not out_masked[0, :, 3:].any()
        assert not out_masked[0, :, :, 4:].any()
        # Without the mask the small image attends to the padding.
        assert not torch.allclose(out_unmasked[:1, :, :3, :4], out_alone)
    # The large image covers the batch: its features are unchanged.
    torch.testing.assert_close(masked[0][1:], model(large)[0])
    sum(out.sum() for out in masked).backward()
    assert model.pos_embed.grad is not None


def test_valid_shapes_bad_input():
    model = tiny().eval()
    x = torch.randn(2, 3, 32, 32)
    with pytest.raises(ValueError, match='2 images'):
        model(x, valid_shapes=[(32, 32)])
    with pytest.raises(ValueError, match='40x32 does not fit'):
        model(x, valid_shapes=[(32, 32), (40, 32)])


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
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import MODELS

    # The build resolves the data preprocessor in the default scope, which
    # an earlier test may have left at another library.
    init_default_scope('mmpretrain')
    cfg = Config.fromfile(CLS_CONFIG)
    cfg.model.backbone.arch = dict(TINY)
    cfg.model.cos_reg_blocks = 3  # of the 4 blocks
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
    init_default_scope('mmpretrain')
    cfg = Config.fromfile(CLS_CONFIG)
    cfg.model.backbone.arch = dict(TINY)
    cfg.model.cos_reg_blocks = 3  # of the 4 blocks
    cfg.model.head.in_channels = 48
    cfg.model.head.num_classes = 5
    cfg.model.backbone.drop_path_rate = 0.
    model = MODELS.build(cfg.model)
    model.init_weights()
    inputs = torch.randn(4, 3, 64, 64)
    samples = [DataSample().set_gt_label(i % 5) for i in range(4)]
    head = model.head
    # Trained as the released code: the class token's loss, plus the patch
    # tokens' loss on the image label (no token labels given).
    losses = model.loss(inputs, samples)
    assert set(losses) >= {'loss', 'loss_token', 'loss_attn_cos'}
    # The released regulariser: 0.1 x the mean cosine similarity across
    # heads of the maps consecutive blocks pass on (the first 3 pairs).
    (tokens, ), maps = model.backbone.forward_with_attn_maps(inputs, 4)
    assert len(maps) == 4 and maps[0].shape == (4, 4, 17, 17)
    similarity = sum(
        torch.nn.functional.cosine_similarity(a, b, dim=1)
        for a, b in zip(maps[:-1], maps[1:])).mean() / 3
    torch.testing.assert_close(losses['loss_attn_cos'], 0.1 * similarity)
    losses['loss_attn_cos'].backward()
    assert model.backbone.blocks[0].attn.qkv.weight.grad is not None
    model.zero_grad()
    tokens = model.extract_feat(inputs)[-1]
    labels = torch.tensor([i % 5 for i in range(4)])
    expected = head.loss_module(head.fc(tokens[:, 0]), labels, avg_factor=4)
    torch.testing.assert_close(losses['loss'], expected)
    aux = head.aux_fc(tokens[:, 1:])
    expected = 0.5 * head.loss_module(
        aux.flatten(0, 1), labels.repeat_interleave(16), avg_factor=64)
    torch.testing.assert_close(losses['loss_token'], expected)
    # Token labels where every sample has them: a soft cross-entropy.
    scores = torch.rand(4, 16, 5).softmax(-1)
    for sample, score in zip(samples, scores):
        sample.set_field(score, 'gt_token_score')
    losses = model.loss(inputs, samples)
    expected = -(scores * aux.log_softmax(-1)).sum(-1).mean() * 0.5
    torch.testing.assert_close(losses['loss_token'], expected)
    samples[0].set_field(torch.rand(3, 5), 'gt_token_score')
    with pytest.raises(ValueError, match='does not fit the 16 patch tokens'):
        model.loss(inputs, samples)
    # Predictions: the released evaluation output.
    model.eval()
    with torch.no_grad():
        preds = model.predict(inputs)
        tokens = model.extract_feat(inputs)[-1]
        expected = head.fc(tokens[:, 0]) + 0.5 * head.aux_fc(
            tokens[:, 1:]).max(1)[0]
    assert preds[0].pred_score.shape == (5, )
    torch.testing.assert_close(preds[0].pred_score, expected[0].softmax(-1))


@pytest.mark.parametrize('kwargs,match', [
    (dict(arch='xl'), "Unknown RefinerViT arch 'xl'"),
    (dict(arch=dict(embed_dims=48)), 'must be a dict with keys'),
])
def test_bad_config_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        RefinerViT(**kwargs)


def test_classifier_regulariser_arguments():
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import MODELS
    init_default_scope('mmpretrain')
    cfg = Config.fromfile(CLS_CONFIG)
    cfg.model.backbone.arch = dict(TINY)
    cfg.model.head.in_channels = 48
    with pytest.raises(ValueError, match=r'cos_reg_blocks \(12\) must be '
                       r'smaller than the backbone depth \(4\)'):
        MODELS.build(cfg.model)
    cfg.model.cos_reg_blocks = -1
    with pytest.raises(ValueError, match='must be >= 0'):
        MODELS.build(cfg.model)
    # Off: ImageClassifier's loss.
    cfg.model.cos_reg_blocks = 0
    model = MODELS.build(cfg.model)
    losses = model.loss(
        torch.randn(2, 3, 32, 32),
        [DataSample().set_gt_label(i) for i in range(2)])
    assert 'loss_attn_cos' not in losses
