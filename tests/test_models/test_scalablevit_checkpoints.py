"""Official checkpoints: conversion, logits parity, loading through init_cfg."""
import copy

import pytest
import torch
from mmengine.config import Config
from reference.official_scalablevit import OfficialScalableViT

from mmscalable.models import ScalableViT

TINY = dict(
    embed_dims=[16, 32, 48, 64],
    depths=[2, 2, 3, 2],
    num_heads=[1, 2, 3, 4],
    channel_ratios=[1.25, 0.5, 1, 1])
CLS_CONFIG = 'configs/scalablevit/scalablevit-s_8xb128_in1k.py'


@pytest.fixture(scope='module')
def official_checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    official = OfficialScalableViT(
        TINY['embed_dims'], TINY['depths'], TINY['num_heads'],
        TINY['channel_ratios'], num_classes=10).eval()
    # Random norms and biases so that a swapped tensor shows in the logits.
    with torch.no_grad():
        for p in official.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    path = tmp_path_factory.mktemp('ckpt') / 'official.pth'
    torch.save({'model': official.state_dict(), 'epoch': 300}, path)
    return official, str(path)


def tiny_classifier_cfg():
    cfg = Config.fromfile(CLS_CONFIG)
    cfg.model.backbone.arch = copy.deepcopy(TINY)
    cfg.model.backbone.drop_path_rate = 0.
    cfg.model.head.in_channels = 64
    cfg.model.head.num_classes = 10
    return cfg


def test_converted_checkpoint_gives_official_logits(official_checkpoint,
                                                    tmp_path):
    from mmpretrain import get_model

    from tools.model_converters.scalablevit2mmscalable import convert
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


def test_backbone_loads_official_checkpoint_through_init_cfg(
        official_checkpoint, tmp_path):
    official, path = official_checkpoint
    backbone = ScalableViT(
        arch=TINY,
        out_indices=(3, ),
        init_cfg=dict(type='Pretrained', checkpoint=path))
    backbone.init_weights()
    backbone.eval()
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        pooled = backbone(x)[0].mean((2, 3))
        features = official.forward_features(x).mean(1)
    torch.testing.assert_close(pooled, features, rtol=1e-4, atol=1e-5)


def test_dense_backbone_loads_classifier_checkpoint_with_prefix(
        official_checkpoint, tmp_path):
    from tools.model_converters.scalablevit2mmscalable import convert
    _, path = official_checkpoint
    converted = str(tmp_path / 'converted.pth')
    state = convert(path, converted)
    backbone = ScalableViT(
        arch=TINY,
        init_cfg=dict(
            type='Pretrained', checkpoint=converted, prefix='backbone.'))
    backbone.init_weights()
    # The classifier has no output norms for stages 0-2: they stay at init.
    torch.testing.assert_close(backbone.norm3.weight,
                               state['backbone.norm3.weight'])
    torch.testing.assert_close(
        backbone.stages[1].blocks[1].attn.k.weight,
        state['backbone.stages.1.blocks.1.attn.k.weight'])


def test_checkpoint_of_another_model_is_refused(tmp_path):
    path = tmp_path / 'resnet.pth'
    torch.save({'state_dict': {'conv1.weight': torch.ones(64, 3, 7, 7)}},
               path)
    backbone = ScalableViT(
        arch=TINY, init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    with pytest.raises(ValueError, match='not a checkpoint of this'):
        backbone.init_weights()


def test_checkpoint_with_mismatched_shapes_is_refused(tmp_path):
    other = ScalableViT(arch=dict(TINY, embed_dims=[16, 32, 48, 96]))
    path = tmp_path / 'other.pth'
    torch.save({'state_dict': other.state_dict()}, path)
    backbone = ScalableViT(
        arch=TINY, init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    with pytest.raises(ValueError, match=r'shape mismatch in 36 tensors: stages.3.patch_embed.projection.weight: checkpoint \(96, 48, 3, 3\) vs model \(64, 48, 3, 3\)'):
        backbone.init_weights()


def test_corrupt_checkpoint_is_named(tmp_path):
    path = tmp_path / 'corrupt.pth'
    path.write_bytes(b'not a checkpoint at all')
    backbone = ScalableViT(
        arch=TINY, init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    with pytest.raises(Exception, match='corrupt.pth'):
        backbone.init_weights()


def test_wrong_prefix_is_named(official_checkpoint, tmp_path):
    path = tmp_path / 'plain.pth'
    torch.save({'state_dict': ScalableViT(arch=TINY).state_dict()}, path)
    backbone = ScalableViT(
        arch=TINY,
        init_cfg=dict(type='Pretrained', checkpoint=str(path),
                      prefix='backbone.'))
    with pytest.raises(ValueError, match="prefix 'backbone.'"):
        backbone.init_weights()
