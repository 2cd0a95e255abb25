_base_ = [
    'mmpretrain::_base_/datasets/imagenet_bs64_swin_224.py',
    'mmpretrain::_base_/schedules/imagenet_bs1024_adamw_swin.py',
    'mmpretrain::_base_/default_runtime.py'
]
custom_imports = dict(imports=['mmscalable.models'], allow_failed_imports=False)

# The official recipe (Swin's code base): 300 epochs, AdamW lr 5e-4 per 512
# images (1e-3 for 8 GPUs x 128), weight decay 0.05 (none on norms and
# biases), 20 warm-up epochs, cosine to 1e-5, gradient clipping at 5,
# RandAugment, Mixup 0.8, CutMix 1.0, label smoothing 0.1; drop path 0.1 (M,
# T, L), 0.2 (S), 0.5 (B).
# SyncBN as officially; on one process use norm_cfg=dict(type='BN').
norm_cfg = dict(type='SyncBN', requires_grad=True)
model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='mmscalable.GroupMixFormer',
        arch='s',
        drop_path_rate=0.2,
        out_indices=(3, ),
        final_norm=True,
        norm_cfg=norm_cfg),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=1000,
        in_channels=320,
        loss=dict(
            type='LabelSmoothLoss', label_smooth_val=0.1, mode='original'),
        # As the official model (LinearClsHead's default is Normal(0.01)).
        init_cfg=dict(type='TruncNormal', layer='Linear', std=0.02, bias=0.)),
    train_cfg=dict(augments=[
        dict(type='Mixup', alpha=0.8),
        dict(type='CutMix', alpha=1.0)
    ]))

train_dataloader = dict(batch_size=128)
optim_wrapper = dict(clip_grad=dict(max_norm=5.0))
auto_scale_lr = dict(base_batch_size=1024)
