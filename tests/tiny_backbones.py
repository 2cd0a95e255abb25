"""A small model of each family, built fresh by each call."""
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
