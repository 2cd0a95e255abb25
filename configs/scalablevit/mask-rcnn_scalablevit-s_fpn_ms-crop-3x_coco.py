_base_ = [
    './mask-rcnn_scalablevit-s_fpn_1x_coco.py',
    '../_base_/schedules/coco_ms_crop_3x.py'
]

# Multi-scale training with random crops, 36 epochs, as the Swin / PVT 3x
# recipes.
train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='RandomFlip', prob=0.5), {{_base_.ms_crop_resize}},
    dict(type='PackDetInputs')
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
train_cfg = dict(max_epochs={{_base_.max_epochs}})
param_scheduler = {{_base_.param_scheduler_3x}}
