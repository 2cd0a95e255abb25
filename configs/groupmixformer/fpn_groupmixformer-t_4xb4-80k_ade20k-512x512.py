_base_ = './fpn_groupmixformer-s_4xb4-80k_ade20k-512x512.py'

model = dict(
    backbone=dict(
        arch='t',
        drop_path_rate=0.1,
        init_cfg=dict(checkpoint='checkpoints/groupmixformer-t_in1k.pth')),
    neck=dict(in_channels=[80, 160, 200, 240]))
