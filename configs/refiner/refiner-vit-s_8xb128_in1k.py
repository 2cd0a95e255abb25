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

train_dataloader = dict(batch_size=128)
auto_scale_lr = dict(base_batch_size=1024)
