"""Official Refiner-ViT checkpoints: conversion, logits parity, loading."""
import argparse
import copy

import pytest
import torch
from official_checks import (assert_converted_logits,
                             assert_key_rules_round_trip)
from official_checks import tiny_classifier_cfg as tiny_classifier_cfg_of
from random_weights import randomise_
from reference.official_refiner import OfficialRefinerViT

from mmscalable.models import RefinerViT
from mmscalable.models.families import FAMILIES

TINY = dict(FAMILIES['refiner'].tiny_arch)
SIZE = 64  # a 4 x 4 grid of patches
CLS_CONFIG = 'configs/refiner/refiner-vit-s_8xb128_in1k.py'


def randomised_official(seed, img_size=SIZE, **arch):
    torch.manual_seed(seed)
    official = OfficialRefinerViT(
        **dict(TINY, **arch), img_size=img_size, num_classes=10).eval()
    return randomise_(official, seed)


def save_official(path, **containers):
    # As timm's CheckpointSaver writes them.
    torch.save(
        dict(
            epoch=300,
            arch='Refiner_ViT_S',
            args=argparse.Namespace(model='Refiner_ViT_S'),
            **containers), path)
    return str(path)


@pytest.fixture(scope='module')
def official_checkpoint(tmp_path_factory):
    """The official model whose weights load by default (the EMA ones, as
    released), the trained model of the same checkpoint, and its path."""
    official, trained = randomised_official(0), randomised_official(1)
    path = save_official(
        tmp_path_factory.mktemp('ckpt') / 'official.pth.tar',
        state_dict=trained.state_dict(),
        state_dict_ema=official.state_dict())
    return official, trained, path


@pytest.fixture(scope='module')
def converted_checkpoint(official_checkpoint, tmp_path_factory):
    from tools.model_converters.refiner2mmscalable import convert
    path = str(tmp_path_factory.mktemp('ckpt') / 'converted.pth')
    return convert(official_checkpoint[2], path), path


def tiny_classifier_cfg():
    cfg = tiny_classifier_cfg_of(
        CLS_CONFIG, TINY, TINY['embed_dims'], img_size=SIZE)
    cfg.model.cos_reg_blocks = 3  # of the 4 blocks
    return cfg


def pretrained(checkpoint, prefix=None, img_size=SIZE, ema=None, **kwargs):
    init_cfg = dict(type='Pretrained', checkpoint=checkpoint)
    if prefix:
        init_cfg['prefix'] = prefix
    if ema is not None:
        init_cfg['ema'] = ema
    backbone = RefinerViT(
        arch=TINY, img_size=img_size, init_cfg=init_cfg, **kwargs)
    backbone.init_weights()
    return backbone.eval()


def test_key_rules_round_trip(official_checkpoint):
    assert_key_rules_round_trip('refiner',
                                official_checkpoint[0].state_dict(),
                                tiny_classifier_cfg())


@pytest.mark.parametrize('size', [(SIZE, SIZE), (96, 80)])
def test_converted_checkpoint_gives_official_logits(official_checkpoint,
                                                    converted_checkpoint,
                                                    size):
    assert_converted_logits(
        official_checkpoint[0],
        converted_checkpoint[1],
        tiny_classifier_cfg(),
        torch.randn(2, 3, *size),
        atol=1e-5)


def test_backbone_loads_official_checkpoint(official_checkpoint):
    official, _, path = official_checkpoint
    backbone = pretrained(path)
    x = torch.randn(2, 3, SIZE, SIZE)
    with torch.no_grad():
        (tokens, ) = backbone(x)
        expected = official.forward_features(x)
    torch.testing.assert_close(tokens, expected, rtol=1e-4, atol=1e-5)

    # Training mode: batch statistics in the stem and the map refinement.
    backbone.train()
    official = copy.deepcopy(official).train()
    torch.testing.assert_close(
        backbone(x)[0], official.forward_features(x), rtol=1e-4, atol=1e-5)


def test_dense_backbone_loads_classifier_checkpoint_with_prefix(
        official_checkpoint, converted_checkpoint):
    official = official_checkpoint[0]
    state, path = converted_checkpoint
    backbone = pretrained(
        path, prefix='backbone.', out_indices=(1, 3), out_type='featmap')
    # Refiner blocks' value projection is the official `attn.qkv`.
    torch.testing.assert_close(backbone.blocks[1].attn.v.weight,
                               official.blocks[1].attn.qkv.weight)
    torch.testing.assert_close(backbone.blocks[3].ffn.gamma2.weight,
                               state['backbone.blocks.3.ffn.gamma2.weight'])
    x = torch.randn(1, 3, 96, 128)
    with torch.no_grad():
        mid, last = backbone(x)
        expected = official.forward_features(x)
    assert mid.shape == (1, 48, 6, 8)
    torch.testing.assert_close(
        last,
        expected[:, 1:].transpose(1, 2).reshape(1, 48, 6, 8),
        rtol=1e-4,
        atol=1e-5)


@pytest.mark.parametrize('source', ['official', 'converted', 'bare'])
@pytest.mark.parametrize('img_size', [96, (96, 128)])
def test_position_embedding_of_another_grid_is_resized(official_checkpoint,
                                                       converted_checkpoint,
                                                       tmp_path, source,
                                                       img_size):
    official, _, path = official_checkpoint
    prefix = None
    if source == 'converted':
        path, prefix = converted_checkpoint[1], 'backbone.'
    elif source == 'bare':
        path = str(tmp_path / 'backbone.pth')
        torch.save(pretrained(official_checkpoint[2]).state_dict(), path)
    backbone = pretrained(path, prefix=prefix, img_size=img_size)
    grid = backbone.pos_grid
    assert backbone.pos_embed.shape == (1, 1 + grid[0] * grid[1], 48)
    # What the model made for the checkpoint's grid uses at this grid.
    expected = pretrained(official_checkpoint[2]).resized_pos_embed(grid)
    torch.testing.assert_close(backbone.pos_embed, expected)
    torch.testing.assert_close(backbone.pos_embed[:, 0], official.pos_embed[:,
                                                                            0])
    x = torch.randn(1, 3, 16 * grid[0], 16 * grid[1])
    with torch.no_grad():
        torch.testing.assert_close(
            backbone(x)[0], official.forward_features(x), rtol=1e-4, atol=1e-5)


def test_position_embedding_of_unknown_grid_is_refused(tmp_path):
    state = RefinerViT(arch=TINY, img_size=(48, 64)).state_dict()
    path = tmp_path / 'wide.pth'
    torch.save({'state_dict': state}, path)
    with pytest.raises(
            ValueError,
            match=r'pos_embed of shape \(1, 13, 48\) is not for a square '
            r'grid of patches; cannot resize it to the 4x4 grid'):
        pretrained(str(path))


def test_final_norm_is_optional(tmp_path):
    state = RefinerViT(arch=TINY, img_size=SIZE, final_norm=False).state_dict()
    path = tmp_path / 'no_norm.pth'
    torch.save({'state_dict': state}, path)
    backbone = pretrained(str(path))
    torch.testing.assert_close(backbone.blocks[2].attn.qkv.weight,
                               state['blocks.2.attn.qkv.weight'])
    torch.testing.assert_close(backbone.norm.weight, torch.ones(48))


def test_ema_weights_selection(official_checkpoint, tmp_path, capsys):
    from tools.model_converters.refiner2mmscalable import convert, main
    ema, trained, path = official_checkpoint
    # By default the EMA weights, as the official figures were measured.
    main([path, str(tmp_path / 'default.pth')])
    assert '(state_dict_ema)' in capsys.readouterr().out
    saved = torch.load(tmp_path / 'default.pth', weights_only=True)
    assert saved['meta']['container'] == 'state_dict_ema'
    torch.testing.assert_close(saved['state_dict']['head.aux_fc.weight'],
                               ema.aux_head.weight)
    main([path, str(tmp_path / 'ema.pth'), '--ema'])
    assert '(state_dict_ema)' in capsys.readouterr().out

    main([path, str(tmp_path / 'trained.pth'), '--no-ema'])
    assert 'state_dict_ema' not in capsys.readouterr().out
    saved = torch.load(tmp_path / 'trained.pth', weights_only=True)
    assert 'container' not in saved['meta']
    torch.testing.assert_close(saved['state_dict']['head.aux_fc.weight'],
                               trained.aux_head.weight)
    with pytest.raises(SystemExit):
        main([path, str(tmp_path / 'x.pth'), '--ema', '--no-ema'])

    # Loading on the fly: the same choice, ema=False in init_cfg.
    x = torch.randn(1, 3, SIZE, SIZE)
    with torch.no_grad():
        torch.testing.assert_close(
            pretrained(path)(x)[0], ema.forward_features(x))
        torch.testing.assert_close(
            pretrained(path, ema=False)(x)[0], trained.forward_features(x))

    # Only EMA weights: taken by default, refused with --no-ema.
    only_ema = save_official(
        tmp_path / 'only_ema.pth.tar', state_dict_ema=ema.state_dict())
    converted = convert(only_ema, str(tmp_path / 'only_ema.pth'))
    torch.testing.assert_close(converted['backbone.pos_embed'], ema.pos_embed)
    with pytest.raises(ValueError, match='holds only EMA weights'):
        convert(only_ema, str(tmp_path / 'out.pth'), ema=False)

    # Only trained weights: taken by default, refused with --ema.
    no_ema = save_official(
        tmp_path / 'no_ema.pth.tar', state_dict=trained.state_dict())
    converted = convert(no_ema, str(tmp_path / 'no_ema.pth'))
    torch.testing.assert_close(converted['backbone.pos_embed'],
                               trained.pos_embed)
    with pytest.raises(
            ValueError, match=r'has no EMA weights .*its keys: .*state_dict'):
        convert(no_ema, str(tmp_path / 'out.pth'), ema=True)


def test_checkpoint_with_mismatched_shapes_is_refused(tmp_path):
    other = RefinerViT(arch=dict(TINY, num_heads=6), img_size=SIZE)
    path = tmp_path / 'other.pth'
    torch.save({'state_dict': other.state_dict()}, path)
    with pytest.raises(
            ValueError,
            match=r'blocks.1.attn.refinement.layers.0.conv.weight: '
            r'checkpoint \(18, 6, 1, 1\) vs model \(12, 4, 1, 1\)'):
        pretrained(str(path))

    # An official checkpoint of other widths (and grid) is not resized but
    # refused, naming the tensors.
    path = save_official(
        tmp_path / 'wide.pth.tar',
        state_dict=randomised_official(0, img_size=96,
                                       embed_dims=64).state_dict())
    with pytest.raises(
            ValueError,
            match=r'pos_embed: checkpoint \(1, 37, 64\) vs model '
            r'\(1, 17, 48\)'):
        pretrained(path)
