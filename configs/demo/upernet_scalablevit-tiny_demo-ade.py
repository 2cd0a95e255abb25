# A small ScalableViT UperNet that learns the embedded demo set
# (data/demo_ade, see tools/misc/make_demo_data.py) on a CPU in minutes.
_base_ = [
    'mmseg::_base_/models/upernet_swin.py',
    '../_base_/datasets/demo_ade_semantic.py',
    'mmseg::_base_/default_runtime.py'
]
custom_imports = dict(imports=['mmscalable.models'], allow_failed_imports=False)

norm_cfg = dict(type='BN', requires_grad=True)
crop_size = (128, 128)
tiny_arch = dict(
    embed_dims=[32, 64, 128, 256],
    depths=[2, 2, 2, 2],
    num_heads=[1, 2, 4, 8],
    channel_ratios=[1, 1, 1, 1])
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(
        _delete_=True,
        type='mmscalable.ScalableViT',
        arch=tiny_arch,
        drop_path_rate=0.,
        out_indices=(0, 1, 2, 3)),
    decode_head=dict(
        in_channels=[32, 64, 128, 256],
        channels=64,
        num_classes=4,
        norm_cfg=norm_cfg),
    auxiliary_head=dict(
        in_channels=128, channels=32, num_classes=4, norm_cfg=norm_cfg))

max_iters = 600
train_cfg = dict(
    type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.01),
    paramwise_cfg=dict(norm_decay_mult=0.))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=50),
    dict(
        type='PolyLR',
        eta_min=1e-5,
        power=1.0,
        begin=50,
        end=max_iters,
        by_epoch=False)
]
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=20, log_metric_by_epoch=False),
    checkpoint=dict(
        type='CheckpointHook', by_epoch=False, interval=max_iters))
randomness = dict(seed=0)
