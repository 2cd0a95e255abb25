"""Official checkpoints: conversion, logits parity, loading through init_cfg."""
import pytest
import torch
from official_checks import (assert_converted_logits,
                             assert_key_rules_round_trip)
from official_checks import tiny_classifier_cfg as tiny_classifier_cfg_of
from random_weights import randomise_
from reference.official_scalablevit import OfficialScalableViT

from mmscalable.models import ScalableViT
from mmscalable.models.families import FAMILIES

# Deeper stages and a channel ratio below one, for the parity with the
# official code.
TINY = dict(
    FAMILIES['scalablevit'].tiny_arch,
    depths=[2, 2, 3, 2],
    channel_ratios=[1.25, 0.5, 1, 1])
CLS_CONFIG = 'configs/scalablevit/scalablevit-s_8xb128_in1k.py'


@pytest.fixture(scope='module')
def official_checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    official = randomise_(
        OfficialScalableViT(
            TINY['embed_dims'], TINY['depths'], TINY['num_heads'],
            TINY['channel_ratios'], num_classes=10).eval())
    path = tmp_path_factory.mktemp('ckpt') / 'official.pth'
    torch.save({'model': official.state_dict(), 'epoch': 300}, path)
    return official, str(path)


def tiny_classifier_cfg():
    return tiny_classifier_cfg_of(CLS_CONFIG, TINY, head_in_channels=64)


def test_key_rules_round_trip(official_checkpoint):
    assert_key_rules_round_trip('scalablevit',
                                official_checkpoint[0].state_dict(),
                                tiny_classifier_cfg())


def test_converted_checkpoint_gives_official_logits(official_checkpoint,
                                                    tmp_path):
    from tools.model_converters.scalablevit2mmscalable import convert
    official, path = official_checkpoint
    converted = str(tmp_path / 'converted.pth')
    convert(path, converted)
    assert_converted_logits(official, converted, tiny_classifier_cfg(),
                            torch.randn(2, 3, 224, 224))


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


def test_checkpoint_with_mismatched_shapes_is_refused(tmp_path):
    other = ScalableViT(arch=dict(TINY, embed_dims=[16, 32, 48, 96]))
    path = tmp_path / 'other.pth'
    torch.save({'state_dict': other.state_dict()}, path)
    backbone = ScalableViT(
        arch=TINY, init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    with pytest.raises(ValueError, match=r'shape mismatch in 36 tensors: stages.3.patch_embed.projection.weight: checkpoint \(96, 48, 3, 3\) vs model \(64, 48, 3, 3\)'):
        backbone.init_weights()
