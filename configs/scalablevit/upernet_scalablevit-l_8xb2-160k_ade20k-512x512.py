_base_ = './upernet_scalablevit-s_8xb2-160k_ade20k-512x512.py'

pretrained = 'checkpoints/scalablevit-l_in1k.pth'
model = dict(
    backbone=dict(arch='l', drop_path_rate=0.3, init_cfg=dict(checkpoint=pretrained)),
    decode_head=dict(in_channels=[128, 256, 512, 1024]),
    auxiliary_head=dict(in_channels=512))
