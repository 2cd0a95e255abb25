_base_ = [
    'mmpretrain::_base_/datasets/imagenet_bs64_swin_224.py',
    'mmpretrain::_base_/schedules/imagenet_bs1024_adamw_swin.py',
    'mmpretrain::_base_/default_runtime.py'
]
custom_imports = dict(
    imports=['mmscalable.models'], allow_failed_imports=False)

# Refiner-ViT-S. The released models normalise images with mean = std = 0.5
# (x255) and evaluate with crop ratio 0.9 (S), 1.0 (M) and 1.13 (L) of 224.
# They were trained with token labeling; drop path as its released scripts
# (scripts/refiner_{s,m,l}_relabel.yaml): 0.2 / 0.25 / 0.25. The rest is the
# AdamW recipe of the base files (RandAugment, Mixup 0.8 / CutMix 1.0, label
# smoothing 0.1), with the released schedule below.
# The released normalisation, in the base's data_preprocessor (num_classes
# there, as in every classification config, so that a config inheriting
# this one sets its classes in one place).
data_preprocessor = dict(
    num_classes=1000,
    mean=[127.5, 127.5, 127.5],
    std=[127.5, 127.5, 127.5],
    to_rgb=True)
model = dict(
    # ImageClassifier plus the released cosine-similarity regulariser of
    # the attention maps of consecutive blocks (cos_reg_component: 12, weight
    # 0.1), used by all the released scripts.
    type='mmscalable.RefinerClassifier',
    cos_reg_blocks=12,
    cos_reg_weight=0.1,
    backbone=dict(type='mmscalable.RefinerViT', arch='s', drop_path_rate=0.2),
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

# The base pipeline, with RandAugment's fill and random erasing's noise in
# this normalisation: timm erases with normal noise in normalised space, i.e.
# mean + std * N(0, 1) in pixels.
norm_mean = [127.5, 127.5, 127.5]
rand_augment = dict(
    type='RandAugment',
    policies='timm_increasing',
    num_policies=2,
    total_level=10,
    magnitude_level=9,
    magnitude_std=0.5,
    hparams=dict(pad_val=[128, 128, 128], interpolation='bicubic'))
random_erasing = dict(
    type='RandomErasing',
    erase_prob=0.25,
    mode='rand',
    min_area_ratio=0.02,
    max_area_ratio=1 / 3,
    fill_color=norm_mean,
    fill_std=norm_mean)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(
        type='RandomResizedCrop',
        scale=224,
        backend='pillow',
        interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'), rand_augment,
    random_erasing,
    dict(type='PackInputs'),
]
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
train_dataloader = dict(
    batch_size=128, dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = dict(dataset=dict(pipeline=test_pipeline))
auto_scale_lr = dict(base_batch_size=1024)

# As released: 5 warm-up epochs, cosine to 1e-5 at epoch 300, then 10
# cool-down epochs at 1e-5 (timm's cooldown_epochs), and an EMA of the
# weights (decay 0.99996; the released checkpoints hold it as
# `state_dict_ema`).
param_scheduler = [
    dict(
        type='LinearLR',
        start_factor=1e-3,
        by_epoch=True,
        end=5,
        convert_to_iter_based=True),
    dict(
        type='CosineAnnealingLR',
        eta_min=1e-5,
        by_epoch=True,
        begin=5,
        end=300)
]
train_cfg = dict(max_epochs=310)
custom_hooks = [dict(type='EMAHook', momentum=4e-5, priority='ABOVE_NORMAL')]
