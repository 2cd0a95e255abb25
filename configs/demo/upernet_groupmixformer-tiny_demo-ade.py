# A small GroupMixFormer UperNet on the embedded demo set: the ScalableViT
# demo with the backbone swapped (same heads, data and schedule).
_base_ = './upernet_scalablevit-tiny_demo-ade.py'

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
    decode_head=dict(in_channels=[40, 80, 120, 160]),
    auxiliary_head=dict(in_channels=120))
