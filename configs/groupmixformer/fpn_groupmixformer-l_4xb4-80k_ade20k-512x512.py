_base_ = [
    'mmseg::_base_/models/fpn_r50.py',
    'mmseg::_base_/datasets/ade20k.py',
    'mmseg::_base_/default_runtime.py',
    'mmseg::_base_/schedules/schedule_80k.py'
]
custom_imports = dict(imports=['mmscalable.models'], allow_failed_imports=False)

# An ImageNet-1k classifier checkpoint: convert the official one with
# tools/model_converters/groupmixformer2mmscalable.py (see the README).
pretrained = 'checkpoints/groupmixformer-l_in1k.pth'
# SyncBN across the GPUs, as the official code; a single process reverts
# it to BN (mmengine does so when training is not distributed).
norm_cfg = dict(type='SyncBN', requires_grad=True)
crop_size = (512, 512)
data_preprocessor = dict(size=crop_size)
model = dict(
    # fpn_r50.py passes a ResNet checkpoint to the backbone; ours comes
    # through the backbone's init_cfg.
    pretrained=None,
    data_preprocessor=data_preprocessor,
    backbone=dict(
        _delete_=True,
        type='mmscalable.GroupMixFormer',
        arch='l',
        drop_path_rate=0.4,
        out_indices=(0, 1, 2, 3),
        norm_cfg=norm_cfg,
        init_cfg=dict(
            type='Pretrained', checkpoint=pretrained, prefix='backbone.')),
    neck=dict(in_channels=[240, 320, 360, 480]),
    decode_head=dict(num_classes=150))

# AdamW with poly decay, as the PVT / Twins Semantic FPN recipe.
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=0.0001, weight_decay=0.0001),
    # No weight decay on norms, biases and the position-encoding convs.
    paramwise_cfg=dict(
        norm_decay_mult=0.,
        bias_decay_mult=0.,
        custom_keys={'pos_conv': dict(decay_mult=0.)}))
param_scheduler = [
    dict(
        type='PolyLR',
        eta_min=0.0,
        power=0.9,
        begin=0,
        end=80000,
        by_epoch=False)
]
# 4 GPUs x 4 images.
train_dataloader = dict(batch_size=4)
val_dataloader = dict(batch_size=1)
test_dataloader = val_dataloader
auto_scale_lr = dict(enable=False, base_batch_size=16)
