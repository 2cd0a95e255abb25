# A small GroupMixFormer Mask R-CNN on the embedded demo set: the ScalableViT
# demo with the backbone swapped (same heads, data and schedule).
_base_ = './mask-rcnn_scalablevit-tiny_fpn_demo-coco.py'

# Channels are multiples of 10 so that the five Group-Mix segments and the
# eight heads over the attended 4/5 divide evenly.
tiny_arch = dict(
    embed_dims=[40, 80, 120, 160], depths=[1, 1, 2, 1], mlp_ratios=[4] * 4)
model = dict(
    backbone=dict(
        _delete_=True,
        type='mmscalable.GroupMixFormer',
        arch=tiny_arch,
        drop_path_rate=0.,
        out_indices=(0, 1, 2, 3),
        norm_cfg=dict(type='BN', requires_grad=True)),
    neck=dict(in_channels=[40, 80, 120, 160]))
