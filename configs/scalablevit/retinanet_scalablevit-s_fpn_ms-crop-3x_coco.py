_base_ = [
    './retinanet_scalablevit-s_fpn_1x_coco.py',
    '../_base_/schedules/coco_ms_crop_3x.py'
]

# Multi-scale training with random crops, 36 epochs, as the Swin / PVT 3x
# recipes (the official README reports 47.8 box AP for S, 48.0 for B).
train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='RandomFlip', prob=0.5), {{_base_.ms_crop_resize}},
    dict(type='PackDetInputs')
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
train_cfg = dict(max_epochs={{_base_.max_epochs}})
param_scheduler = {{_base_.param_scheduler_3x}}
