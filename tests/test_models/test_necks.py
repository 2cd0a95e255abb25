"""SimpleFeaturePyramid (ViTDet) and LayerNorm2d: shapes, registry, errors."""
import pytest
import torch
import torch.nn as nn

from mmscalable.models import LayerNorm2d, SimpleFeaturePyramid


@pytest.mark.parametrize('num_outs', [4, 5])
@pytest.mark.parametrize('size', [(5, 7), (6, 8), (3, 2)])
def test_pyramid_shapes_at_odd_sizes(num_outs, size):
    h, w = size
    neck = SimpleFeaturePyramid(32, 16, num_outs=num_outs)
    x = torch.randn(2, 32, h, w)
    # in_index=-1 takes the last backbone output.
    outs = neck((torch.randn(2, 8, 1, 1), x))
    expected = [(4 * h, 4 * w), (2 * h, 2 * w), (h, w), (h // 2, w // 2),
                ((h // 2 + 1) // 2, (w // 2 + 1) // 2)][:num_outs]
    assert len(outs) == num_outs
    assert [tuple(o.shape[2:]) for o in outs] == expected
    assert all(o.shape[:2] == (2, 16) and o.is_contiguous() for o in outs)


def test_strides_of_padded_images():
    """Images padded to a multiple of 32: strides 4, 8, 16, 32, and the
    extra level rounds up as FPN's P6 (mmdet's Mask R-CNN anchors)."""
    neck = SimpleFeaturePyramid(24, 8)
    for image, last in (((128, 192), (2, 3)), ((96, 160), (2, 3))):
        outs = neck([torch.randn(1, 24, image[0] // 16, image[1] // 16)])
        strides = [(image[0] / o.shape[2], image[1] / o.shape[3])
                   for o in outs[:4]]
        assert strides == [(s, s) for s in (4, 8, 16, 32)]
        assert tuple(outs[4].shape[2:]) == last


def test_layout_follows_vitdet():
    neck = SimpleFeaturePyramid(32, 16)
    up4, up2, same, down2 = neck.resamplers
    assert [type(m) for m in up4] == [
        nn.ConvTranspose2d, LayerNorm2d, nn.GELU, nn.ConvTranspose2d
    ]
    assert (up4[0].out_channels, up4[3].out_channels) == (16, 8)
    assert isinstance(up2, nn.ConvTranspose2d) and up2.out_channels == 16
    assert isinstance(same, nn.Identity)
    assert isinstance(down2, nn.MaxPool2d)
    for output, channels in zip(neck.outputs, (8, 16, 32, 32)):
        lateral, conv = output
        assert lateral.conv.kernel_size == (1, 1)
        assert lateral.conv.in_channels == channels
        assert conv.conv.kernel_size == (3, 3)
        assert lateral.conv.bias is None and conv.conv.bias is None
        assert isinstance(lateral.norm, LayerNorm2d)
        assert lateral.norm.eps == 1e-6


def test_in_index_picks_the_input():
    neck = SimpleFeaturePyramid(
        8, 4, scale_factors=(1.0, ), num_outs=2, in_index=0)
    outs = neck((torch.randn(1, 8, 3, 3), torch.randn(1, 16, 5, 5)))
    assert [tuple(o.shape) for o in outs] == [(1, 4, 3, 3), (1, 4, 2, 2)]


def test_gradients_reach_the_input_and_every_parameter():
    neck = SimpleFeaturePyramid(16, 8)
    x = torch.randn(2, 16, 5, 6, requires_grad=True)
    sum((o * torch.randn_like(o)).sum() for o in neck([x])).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    for name, p in neck.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_layer_norm_2d_normalises_channels():
    norm = LayerNorm2d(6, eps=1e-6)
    nn.init.normal_(norm.weight)
    nn.init.normal_(norm.bias)
    x = torch.randn(2, 6, 3, 4)
    expected = nn.functional.layer_norm(
        x.permute(0, 2, 3, 1), (6, ), norm.weight, norm.bias,
        1e-6).permute(0, 3, 1, 2)
    torch.testing.assert_close(norm(x), expected)
    with pytest.raises(ValueError, match=r'expects \(B, 6, H, W\)'):
        norm(torch.randn(2, 5, 3, 4))


@pytest.mark.parametrize('scope', ['mmdet', 'mmseg'])
def test_builds_with_its_norm_from_the_task_registries(scope):
    """build_norm_layer resolves 'mmscalable.LN2d' while mmdet's (mmseg's)
    registry builds the neck, i.e. under that default scope."""
    from mmcv.cnn import build_norm_layer
    from mmengine.registry import DefaultScope
    if scope == 'mmdet':
        from mmdet.registry import MODELS
    else:
        from mmseg.registry import MODELS
    neck = MODELS.build(
        dict(
            type='mmscalable.SimpleFeaturePyramid',
            in_channels=16,
            out_channels=8,
            scale_factors=(2.0, 1.0),
            num_outs=3))
    assert isinstance(neck.outputs[0][0].norm, LayerNorm2d)
    assert len(neck((torch.randn(1, 16, 4, 4), ))) == 3
    with DefaultScope.overwrite_default_scope(scope):
        _, norm = build_norm_layer(dict(type='mmscalable.LN2d'), 4)
    assert isinstance(norm, LayerNorm2d)
    # The plain name resolves in mmscalable's own scope.
    with DefaultScope.overwrite_default_scope('mmscalable'):
        _, norm = build_norm_layer(dict(type='LN2d'), 4)
    assert isinstance(norm, LayerNorm2d)


def test_other_norms_and_activations():
    neck = SimpleFeaturePyramid(
        16, 8, norm_cfg=dict(type='BN'), act_cfg=dict(type='ReLU'))
    assert isinstance(neck.resamplers[0][1], nn.BatchNorm2d)
    assert isinstance(neck.resamplers[0][2], nn.ReLU)
    assert len(neck([torch.randn(2, 16, 4, 4)])) == 5


def test_bad_arguments():
    with pytest.raises(ValueError, match='scale_factors must be taken'):
        SimpleFeaturePyramid(32, 16, scale_factors=(3.0, 1.0))
    with pytest.raises(ValueError, match='scale_factors must be taken'):
        SimpleFeaturePyramid(32, 16, scale_factors=())
    with pytest.raises(ValueError, match='strictly decreasing'):
        SimpleFeaturePyramid(32, 16, scale_factors=(1.0, 2.0))
    with pytest.raises(ValueError, match='num_outs must be 4 or 5'):
        SimpleFeaturePyramid(32, 16, num_outs=7)
    with pytest.raises(ValueError, match='num_outs must be 2 or 3'):
        SimpleFeaturePyramid(32, 16, scale_factors=(2.0, 1.0))
    with pytest.raises(ValueError, match='in_channels must be a positive'):
        SimpleFeaturePyramid([32] * 4, 16)
    with pytest.raises(ValueError, match='out_channels must be a positive'):
        SimpleFeaturePyramid(32, 0)
    with pytest.raises(ValueError, match='in_channels must be at least 4'):
        SimpleFeaturePyramid(2, 16)


def test_bad_inputs():
    neck = SimpleFeaturePyramid(32, 16)
    with pytest.raises(ValueError, match=r'expects a \(B, 32, h, w\) map'):
        neck((torch.randn(1, 24, 4, 4), ))
    with pytest.raises(ValueError, match=r'expects a \(B, 32, h, w\) map'):
        neck((torch.randn(1, 16, 32), ))
    with pytest.raises(ValueError, match='in_index -1 is out of range'):
        neck(())
    with pytest.raises(ValueError, match='expects the tuple of backbone'):
        neck(torch.randn(1, 32, 4, 4))
    with pytest.raises(ValueError, match='needs a map of at least 2x2'):
        neck((torch.randn(1, 32, 1, 4), ))
