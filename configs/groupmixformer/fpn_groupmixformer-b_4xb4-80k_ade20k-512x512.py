_base_ = './fpn_groupmixformer-s_4xb4-80k_ade20k-512x512.py'

model = dict(
    backbone=dict(
        arch='b',
        drop_path_rate=0.3,
        init_cfg=dict(checkpoint='checkpoints/groupmixformer-b_in1k.pth')),
    neck=dict(in_channels=[200, 240, 320, 480]))
