_base_ = [
    'mmpretrain::_base_/datasets/imagenet_bs64_swin_224.py',
    'mmpretrain::_base_/schedules/imagenet_bs1024_adamw_swin.py',
    'mmpretrain::_base_/default_runtime.py'
]
custom_imports = dict(
    imports=['mmscalable.models'], allow_failed_imports=False)

# Refiner-ViT-S. The released models normalise images with mean = std = 0.5
# (x255) and evaluate with crop ratio 0.9 (S), 1.0 (M) and 1.13 (L) of 224.
# Drop path as the released scripts/refiner_{s,m,l}.yaml: 0.1 / 0.2 / 0.2.
# The rest of the schedule is the Swin-style AdamW recipe of the base files
# (300 epochs, RandAugment, Mixup 0.8 / CutMix 1.0, label smoothing 0.1).
model = dict(
    type='ImageClassifier',
    data_preprocessor=dict(
        num_classes=1000,
        mean=[127.5, 127.5, 127.5],
        std=[127.5, 127.5, 127.5],
        to_rgb=True),
    backbone=dict(type='mmscalable.RefinerViT', arch='s', drop_path_rate=0.1),
    head=dict(
        type='mmscalable.RefinerClsHead',
        num_classes=1000,
        in_channels=384,
        loss=dict(
            type='LabelSmoothLoss', label_smooth_val=0.1, mode='original')),
    train_cfg=dict(augments=[
        dict(type='Mixup', alpha=0.8),
        dict(type='CutMix', alpha=1.0)
    ]))

# timm's evaluation with crop ratio 0.9: resize the short side to
# floor(224 / 0.9), crop the centre 224.
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(
        type='ResizeEdge',
        scale=248,
        edge='short',
        backend='pillow',
        interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=224),
    dict(type='PackInputs'),
]
train_dataloader = dict(batch_size=128)
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = dict(dataset=dict(pipeline=test_pipeline))
auto_scale_lr = dict(base_batch_size=1024)

# As released: 5 warm-up epochs, cosine to 1e-5, and an EMA of the weights
# (decay 0.99996; the released checkpoints hold it as `state_dict_ema`).
param_scheduler = [
    dict(
        type='LinearLR',
        start_factor=1e-3,
        by_epoch=True,
        end=5,
        convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=5)
]
custom_hooks = [dict(type='EMAHook', momentum=4e-5, priority='ABOVE_NORMAL')]
