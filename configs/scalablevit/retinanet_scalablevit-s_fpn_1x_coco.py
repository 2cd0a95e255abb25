_base_ = [
    'mmdet::_base_/models/retinanet_r50_fpn.py',
    'mmdet::_base_/datasets/coco_detection.py',
    'mmdet::_base_/schedules/schedule_1x.py',
    'mmdet::_base_/default_runtime.py',
    '../_base_/datasets/coco_detection_tta.py'
]
custom_imports = dict(imports=['mmscalable.models'], allow_failed_imports=False)

pretrained = 'checkpoints/scalablevit-s_in1k.pth'
model = dict(
    backbone=dict(
        _delete_=True,
        type='mmscalable.ScalableViT',
        arch='s',
        drop_path_rate=0.2,
        out_indices=(0, 1, 2, 3),
        init_cfg=dict(
            type='Pretrained', checkpoint=pretrained, prefix='backbone.')),
    # The FPN starts at stride 8 (start_level=1) with extra levels on the
    # input, as the PVT / Twins RetinaNet recipes.
    neck=dict(in_channels=[64, 128, 256, 512]))

optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(
        _delete_=True,
        type='AdamW',
        lr=0.0001,
        betas=(0.9, 0.999),
        weight_decay=0.0001),
    paramwise_cfg=dict(
        norm_decay_mult=0.,
        custom_keys={'pos_conv': dict(decay_mult=0.)}))
auto_scale_lr = dict(enable=False, base_batch_size=16)
