"""Official GroupMixFormer checkpoints: conversion, logits parity, loading."""
import copy

import pytest
import torch
from official_checks import (assert_converted_logits,
                             assert_key_rules_round_trip)
from official_checks import tiny_classifier_cfg as tiny_classifier_cfg_of
from random_weights import randomise_
from reference.official_groupmixformer import OfficialGroupMixFormer

from mmscalable.models import GroupMixFormer
from mmscalable.models.families import FAMILIES

# Wider and deeper stages, for the parity with the official code.
TINY = dict(
    FAMILIES['groupmixformer'].tiny_arch,
    embed_dims=[40, 80, 80, 120],
    depths=[1, 2, 2, 1],
    mlp_ratios=[4, 4, 2, 2])
CLS_CONFIG = 'configs/groupmixformer/groupmixformer-s_8xb128_in1k.py'


@pytest.fixture(scope='module')
def official_checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    official = randomise_(
        OfficialGroupMixFormer(
            TINY['embed_dims'], TINY['depths'], TINY['mlp_ratios'],
            num_classes=10).eval())
    path = tmp_path_factory.mktemp('ckpt') / 'official.pth'
    torch.save({'model': official.state_dict(), 'epoch': 300}, path)
    return official, str(path)


def tiny_classifier_cfg():
    # SyncBN needs a process group; one process uses BN (same keys).
    return tiny_classifier_cfg_of(
        CLS_CONFIG, TINY, head_in_channels=120, norm_cfg=dict(type='BN'))


def test_key_rules_round_trip(official_checkpoint):
    assert_key_rules_round_trip('groupmixformer',
                                official_checkpoint[0].state_dict(),
                                tiny_classifier_cfg())


def test_converted_checkpoint_gives_official_logits(official_checkpoint,
                                                    tmp_path):
    from tools.model_converters.groupmixformer2mmscalable import convert
    official, path = official_checkpoint
    converted = str(tmp_path / 'converted.pth')
    convert(path, converted)
    assert_converted_logits(official, converted, tiny_classifier_cfg(),
                            torch.randn(2, 3, 224, 224))


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
