"""The backbones' fast paths trace: ``torch.export`` gives the same outputs.

Tracing (export, and ``torch.compile``) runs the ops' pure-PyTorch
references and rebuilds fused weights in the graph, so nothing opaque or
cached ends up in it.
"""
import pytest
import torch

from mmscalable.models import GroupMixFormer, RefinerViT, ScalableViT

BACKBONES = {
    'scalablevit':
    lambda: ScalableViT(
        arch=dict(embed_dims=[16, 32, 48, 64], depths=[1, 1, 1, 1],
                  num_heads=[1, 2, 3, 4], channel_ratios=[1.25, 1, 1, 1])),
    'groupmixformer':
    lambda: GroupMixFormer(
        arch=dict(embed_dims=[40, 40, 80, 80], depths=[1, 1, 1, 1],
                  mlp_ratios=[2] * 4)),
    'refiner':
    lambda: RefinerViT(
        arch=dict(embed_dims=48, depth=4, num_heads=4), out_type='featmap',
        out_indices=(1, 3)),
}


@pytest.mark.parametrize('name', list(BACKBONES))
def test_torch_export_matches_eager(name):
    torch.manual_seed(0)
    model = BACKBONES[name]().eval()
    # 64x96 leaves padded IWSA windows at stride 8 (12 columns, windows
    # of 7), and odd maps for the Group-Mix convs.
    example = torch.randn(2, 3, 64, 96)
    exported = torch.export.export(model, (example, ))
    fresh = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        expected = model(fresh)
        outs = exported.module()(fresh)
    assert len(outs) == len(expected)
    for out, ref in zip(outs, expected):
        torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
