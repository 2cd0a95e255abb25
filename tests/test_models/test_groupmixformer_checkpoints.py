"""Official GroupMixFormer checkpoints: conversion, logits parity, loading."""
import copy

import pytest
import torch
from mmengine.config import Config
from reference.official_groupmixformer import OfficialGroupMixFormer

from mmscalable.models import GroupMixFormer
from mmscalable.models.checkpoint import (groupmixformer_mmcls_to_official,
                                          groupmixformer_official_to_mmcls)

TINY = dict(embed_dims=[40, 80, 80, 120], depths=[1, 2, 2, 1],
            mlp_ratios=[4, 4, 2, 2])
CLS_CONFIG = 'configs/groupmixformer/groupmixformer-s_8xb128_in1k.py'


@pytest.fixture(scope='module')
def official_checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    official = OfficialGroupMixFormer(
        TINY['embed_dims'], TINY['depths'], TINY['mlp_ratios'],
        num_classes=10).eval()
    # Random norms, biases and BN statistics so that a swapped tensor shows
    # in the logits.
    with torch.no_grad():
        for p in official.parameters():
            p.add_(torch.randn_like(p) * 0.05)
        for name, buf in official.named_buffers():
            if name.endswith('running_mean'):
                buf.copy_(torch.randn_like(buf) * 0.1)
            elif name.endswith('running_var'):
                buf.copy_(torch.rand_like(buf) + 0.5)
    path = tmp_path_factory.mktemp('ckpt') / 'official.pth'
    torch.save({'model': official.state_dict(), 'epoch': 300}, path)
    return official, str(path)


def tiny_classifier_cfg():
    cfg = Config.fromfile(CLS_CONFIG)
    cfg.model.backbone.arch = copy.deepcopy(TINY)
    cfg.model.backbone.drop_path_rate = 0.
    cfg.model.backbone.norm_cfg = dict(type='BN')
    cfg.model.head.in_channels = 120
    cfg.model.head.num_classes = 10
    return cfg


def test_key_rules_round_trip(official_checkpoint):
    official, _ = official_checkpoint
    state = official.state_dict()
    converted = groupmixformer_official_to_mmcls(state)
    assert list(groupmixformer_mmcls_to_official(converted)) == list(state)
    from mmpretrain.registry import MODELS
    from mmengine.registry import init_default_scope

    # Another test may have left another library's scope current.
    init_default_scope('mmpretrain')
    model = MODELS.build(tiny_classifier_cfg().model)
    assert sorted(converted) == sorted(model.state_dict())


def test_converted_checkpoint_gives_official_logits(official_checkpoint,
                                                    tmp_path):
    from mmpretrain import get_model

    from tools.model_converters.groupmixformer2mmscalable import convert
    official, path = official_checkpoint
    converted = tmp_path / 'converted.pth'
    convert(path, str(converted))
    model = get_model(tiny_classifier_cfg(), pretrained=str(converted))
    model.eval()
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        expected = official(x)
        logits = model(x, mode='tensor')
    torch.testing.assert_close(logits, expected, rtol=1e-4, atol=1e-4)


def test_training_mode_matches_official(official_checkpoint):
    """BatchNorm statistics of q, k and v are taken together, as officially."""
    official, path = official_checkpoint
    official = copy.deepcopy(official).train()
    backbone = GroupMixFormer(
        arch=TINY, drop_path_rate=0., out_indices=(3, ), final_norm=True,
        init_cfg=dict(type='Pretrained', checkpoint=path))
    backbone.init_weights()
    backbone.train()
    x = torch.randn(2, 3, 64, 96)
    torch.testing.assert_close(
        backbone(x)[0], official.norm4(official.forward_features(x)[-1]),
        rtol=1e-4, atol=1e-4)


def test_dense_backbone_loads_official_checkpoint(official_checkpoint):
    official, path = official_checkpoint
    backbone = GroupMixFormer(
        arch=TINY, init_cfg=dict(type='Pretrained', checkpoint=path))
    backbone.init_weights()
    backbone.eval()
    x = torch.randn(1, 3, 96, 128)
    with torch.no_grad():
        outs = backbone(x)
        expected = official.forward_features(x)
    assert len(outs) == 4
    for out, ref in zip(outs, expected):
        torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)


def test_dense_backbone_loads_classifier_checkpoint_with_prefix(
        official_checkpoint, tmp_path):
    from tools.model_converters.groupmixformer2mmscalable import convert
    _, path = official_checkpoint
    converted = str(tmp_path / 'converted.pth')
    state = convert(path, converted)
    backbone = GroupMixFormer(
        arch=TINY,
        init_cfg=dict(
            type='Pretrained', checkpoint=converted, prefix='backbone.'))
    backbone.init_weights()
    torch.testing.assert_close(
        backbone.stages[2].blocks[1].attn.crpe.convs[2].weight,
        state['backbone.stages.2.blocks.1.attn.crpe.convs.2.weight'])


def test_converter_refuses_other_checkpoints(tmp_path):
    from tools.model_converters.groupmixformer2mmscalable import convert
    path = tmp_path / 'scalablevit.pth'
    torch.save({'model': {'patch_embeds.0.proj.weight': torch.ones(1)}},
               path)
    with pytest.raises(ValueError, match='not an official GroupMixFormer'):
        convert(str(path), str(tmp_path / 'out.pth'))


def test_checkpoint_with_mismatched_shapes_is_refused(tmp_path):
    other = GroupMixFormer(arch=dict(TINY, embed_dims=[40, 80, 80, 160]))
    path = tmp_path / 'other.pth'
    torch.save({'state_dict': other.state_dict()}, path)
    backbone = GroupMixFormer(
        arch=TINY, init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    with pytest.raises(
            ValueError,
            match=r'stages.3.patch_embed.pointwise_conv.conv.weight: '
            r'checkpoint \(160, 80, 1, 1\) vs model \(120, 80, 1, 1\)'):
        backbone.init_weights()
