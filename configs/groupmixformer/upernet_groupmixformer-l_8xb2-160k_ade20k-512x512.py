_base_ = [
    'mmseg::_base_/models/upernet_swin.py',
    'mmseg::_base_/datasets/ade20k.py',
    'mmseg::_base_/default_runtime.py',
    'mmseg::_base_/schedules/schedule_160k.py'
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
    decode_head=dict(in_channels=[240, 320, 360, 480], num_classes=150),
    auxiliary_head=dict(in_channels=360, num_classes=150))

# AdamW, linear warm-up then poly decay, as the Swin UperNet recipe.
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(
        type='AdamW', lr=0.00006, betas=(0.9, 0.999), weight_decay=0.01),
    # No weight decay on norms, biases and the position-encoding convs.
    paramwise_cfg=dict(
        norm_decay_mult=0.,
        bias_decay_mult=0.,
        custom_keys={'pos_conv': dict(decay_mult=0.)}))
param_scheduler = [
    dict(
        type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0,
        end=1500),
    dict(
        type='PolyLR',
        eta_min=0.0,
        power=1.0,
        begin=1500,
        end=160000,
        by_epoch=False)
]
# 8 GPUs x 2 images.
train_dataloader = dict(batch_size=2)
val_dataloader = dict(batch_size=1)
test_dataloader = val_dataloader
auto_scale_lr = dict(enable=False, base_batch_size=16)
