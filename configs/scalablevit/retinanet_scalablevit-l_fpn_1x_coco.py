_base_ = './retinanet_scalablevit-s_fpn_1x_coco.py'

pretrained = 'checkpoints/scalablevit-l_in1k.pth'
model = dict(
    backbone=dict(arch='l', drop_path_rate=0.3, init_cfg=dict(checkpoint=pretrained)),
    neck=dict(in_channels=[128, 256, 512, 1024]))
