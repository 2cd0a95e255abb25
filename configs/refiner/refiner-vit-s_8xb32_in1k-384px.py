_base_ = './refiner-vit-s_8xb128_in1k.py'

# Refiner-ViT-S fine-tuned at 384 (reported 84.6 top-1) from the 224
# classifier; its 14 x 14 position embedding is resized bicubically to 24 x 24
# on loading, as the released fine-tuning code does. Refiner published no
# fine-tuning recipe; this is that of the token-labeling code base it is
# built on (LV-ViT): AdamW at a constant lr 5e-6 for 256 images (8 x 32),
# weight decay 1e-8, 5 warm-up epochs from 1e-6, drop path 0.1, no EMA.
# The number of epochs is not published either: 30, as Swin and DeiT
# fine-tune at 384.
model = dict(
    backbone=dict(
        img_size=384,
        drop_path_rate=0.1,
        init_cfg=dict(
            type='Pretrained',
            checkpoint='checkpoints/refiner-vit-s_in1k.pth',
            prefix='backbone.')))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(
        type='RandomResizedCrop',
        scale=384,
        backend='pillow',
        interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    {{_base_.rand_augment}}, {{_base_.random_erasing}},
    dict(type='PackInputs'),
]
# Crop ratio 1.0 at 384.
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(
        type='ResizeEdge',
        scale=384,
        edge='short',
        backend='pillow',
        interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=384),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    batch_size=32, dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = dict(dataset=dict(pipeline=test_pipeline))

optim_wrapper = dict(optimizer=dict(lr=5e-6, weight_decay=1e-8))
auto_scale_lr = dict(base_batch_size=256)
param_scheduler = [
    dict(
        type='LinearLR',
        start_factor=0.2,
        by_epoch=True,
        end=5,
        convert_to_iter_based=True)
]
train_cfg = dict(max_epochs=30)
custom_hooks = []
