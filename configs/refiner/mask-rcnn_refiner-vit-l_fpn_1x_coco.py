_base_ = './mask-rcnn_refiner-vit-s_fpn_1x_coco.py'

pretrained = 'checkpoints/refiner-vit-l_in1k.pth'
model = dict(
    backbone=dict(
        arch='l',
        drop_path_rate=0.2,
        out_indices=(31, ),
        init_cfg=dict(checkpoint=pretrained)),
    neck=dict(in_channels=512))
