_base_ = './retinanet_groupmixformer-s_fpn_1x_coco.py'

model = dict(
    backbone=dict(
        arch='b',
        drop_path_rate=0.3,
        init_cfg=dict(checkpoint='checkpoints/groupmixformer-b_in1k.pth')),
    neck=dict(in_channels=[200, 240, 320, 480]))
