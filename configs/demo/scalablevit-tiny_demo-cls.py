# A small ScalableViT classifier that learns the embedded demo set
# (data/demo_cls, see tools/misc/make_demo_data.py) on a CPU in about two
# minutes.
_base_ = [
    '../_base_/datasets/demo_cls.py', 'mmpretrain::_base_/default_runtime.py'
]
custom_imports = dict(imports=['mmscalable.models'], allow_failed_imports=False)

model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='mmscalable.ScalableViT',
        arch=dict(
            embed_dims=[32, 64, 128, 256],
            depths=[2, 2, 2, 2],
            num_heads=[1, 2, 4, 8],
            channel_ratios=[1, 1, 1, 1]),
        drop_path_rate=0.,
        out_indices=(3, )),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='mmscalable.ScalableViTClsHead',
        num_classes=3,
        in_channels=256,
        hidden_dims=256,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0)))

max_epochs = 30
train_cfg = dict(by_epoch=True, max_epochs=max_epochs, val_interval=max_epochs)
val_cfg = dict()
test_cfg = dict()
optim_wrapper = dict(
    optimizer=dict(type='AdamW', lr=2e-3, weight_decay=0.05),
    paramwise_cfg=dict(norm_decay_mult=0., bias_decay_mult=0.))
# A short linear warm-up, then cosine decay (per iteration).
param_scheduler = [
    dict(
        type='LinearLR',
        start_factor=0.01,
        by_epoch=True,
        begin=0,
        end=2,
        convert_to_iter_based=True),
    dict(
        type='CosineAnnealingLR',
        eta_min=1e-5,
        by_epoch=True,
        begin=2,
        end=max_epochs,
        convert_to_iter_based=True)
]
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=10),
    checkpoint=dict(type='CheckpointHook', interval=max_epochs))
randomness = dict(seed=0)
