_base_ = [
    'mmseg::_base_/models/fpn_r50.py',
    'mmseg::_base_/datasets/ade20k.py',
    'mmseg::_base_/default_runtime.py',
    'mmseg::_base_/schedules/schedule_80k.py'
]
custom_imports = dict(imports=['mmscalable.models'], allow_failed_imports=False)

crop_size = (512, 512)
data_preprocessor = dict(size=crop_size)
pretrained = 'checkpoints/scalablevit-s_in1k.pth'
model = dict(
    # fpn_r50.py passes a ResNet checkpoint to the backbone; ours comes
    # through the backbone's init_cfg.
    pretrained=None,
    data_preprocessor=data_preprocessor,
    backbone=dict(
        _delete_=True,
        type='mmscalable.ScalableViT',
        arch='s',
        drop_path_rate=0.2,
        out_indices=(0, 1, 2, 3),
        init_cfg=dict(
            type='Pretrained', checkpoint=pretrained, prefix='backbone.')),
    neck=dict(in_channels=[64, 128, 256, 512]),
    decode_head=dict(num_classes=150))

# AdamW with poly decay, as the PVT / Twins Semantic FPN recipe.
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=0.0001, weight_decay=0.0001),
    paramwise_cfg=dict(
        norm_decay_mult=0.,
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
