_base_ = [
    'mmdet::_base_/models/retinanet_r50_fpn.py',
    'mmdet::_base_/datasets/coco_detection.py',
    'mmdet::_base_/schedules/schedule_1x.py',
    'mmdet::_base_/default_runtime.py',
    '../_base_/datasets/coco_detection_tta.py'
]
custom_imports = dict(imports=['mmscalable.models'], allow_failed_imports=False)

# An ImageNet-1k classifier checkpoint: convert the official one with
# tools/model_converters/groupmixformer2mmscalable.py (see the README).
pretrained = 'checkpoints/groupmixformer-s_in1k.pth'
# SyncBN across the GPUs, as the official code; a single process reverts
# it to BN (mmengine does so when training is not distributed).
norm_cfg = dict(type='SyncBN', requires_grad=True)
model = dict(
    backbone=dict(
        _delete_=True,
        type='mmscalable.GroupMixFormer',
        arch='s',
        drop_path_rate=0.2,
        out_indices=(0, 1, 2, 3),
        norm_cfg=norm_cfg,
        init_cfg=dict(
            type='Pretrained', checkpoint=pretrained, prefix='backbone.')),
    # The FPN starts at stride 8 (start_level=1) with extra levels on the
    # input, as the PVT / Twins RetinaNet recipes.
    neck=dict(in_channels=[80, 160, 320, 320]))

optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(
        _delete_=True,
        type='AdamW',
        lr=0.0001,
        betas=(0.9, 0.999),
        weight_decay=0.0001),
    # No weight decay on norms, biases and the position-encoding convs.
    paramwise_cfg=dict(
        norm_decay_mult=0.,
        bias_decay_mult=0.,
        custom_keys={'pos_conv': dict(decay_mult=0.)}))
auto_scale_lr = dict(enable=False, base_batch_size=16)
