_base_ = './retinanet_scalablevit-s_fpn_ms-crop-3x_coco.py'

pretrained = 'checkpoints/scalablevit-b_in1k.pth'
model = dict(
    backbone=dict(
        arch='b', drop_path_rate=0.3, init_cfg=dict(checkpoint=pretrained)),
    neck=dict(in_channels=[96, 192, 384, 768]))
