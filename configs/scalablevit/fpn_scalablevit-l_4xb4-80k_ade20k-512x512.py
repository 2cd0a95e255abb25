_base_ = './fpn_scalablevit-s_4xb4-80k_ade20k-512x512.py'

pretrained = 'checkpoints/scalablevit-l_in1k.pth'
model = dict(
    backbone=dict(arch='l', drop_path_rate=0.3, init_cfg=dict(checkpoint=pretrained)),
    neck=dict(in_channels=[128, 256, 512, 1024]))
