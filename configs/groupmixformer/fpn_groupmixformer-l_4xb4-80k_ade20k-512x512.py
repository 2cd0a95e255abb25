_base_ = './fpn_groupmixformer-s_4xb4-80k_ade20k-512x512.py'

model = dict(
    backbone=dict(
        arch='l',
        drop_path_rate=0.4,
        init_cfg=dict(checkpoint='checkpoints/groupmixformer-l_in1k.pth')),
    neck=dict(in_channels=[240, 320, 360, 480]))
