_base_ = [
    'mmpretrain::_base_/datasets/imagenet_bs64_swin_224.py',
    'mmpretrain::_base_/schedules/imagenet_bs1024_adamw_swin.py',
    'mmpretrain::_base_/default_runtime.py'
]
custom_imports = dict(imports=['mmscalable.models'], allow_failed_imports=False)

# The official recipe: DeiT-style training, 300 epochs, AdamW lr 1e-3 for a
# batch of 1024 (8 GPUs x 128), weight decay 0.05, 5 warm-up epochs from
# 1e-6, cosine to 1e-5, gradient norm clipped at 5, drop path 0.2 (S) /
# 0.5 (B, L).
model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='mmscalable.ScalableViT',
        arch='s',
        drop_path_rate=0.2,
        out_indices=(3, )),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='mmscalable.ScalableViTClsHead',
        num_classes=1000,
        in_channels=512,
        hidden_dims=4096,
        loss=dict(
            type='LabelSmoothLoss', label_smooth_val=0.1, mode='original')),
    train_cfg=dict(augments=[
        dict(type='Mixup', alpha=0.8),
        dict(type='CutMix', alpha=1.0)
    ]))

train_dataloader = dict(batch_size=128)
optim_wrapper = dict(
    optimizer=dict(lr=1e-3),
    clip_grad=dict(max_norm=5.0),
    paramwise_cfg=dict(
        norm_decay_mult=0.0,
        bias_decay_mult=0.0,
        custom_keys={'pos_conv': dict(decay_mult=0.0)}))
auto_scale_lr = dict(base_batch_size=1024)
# Swin's schedule warms up for 20 epochs; the official one for 5.
param_scheduler = [
    dict(
        type='LinearLR',
        start_factor=1e-3,
        by_epoch=True,
        end=5,
        convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=5)
]
