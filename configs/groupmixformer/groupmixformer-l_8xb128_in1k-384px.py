_base_ = './groupmixformer-l_8xb128_in1k.py'

# GroupMixFormer-L at 384 (reported 86.2 top-1). The fine-tuning schedule is
# not published; this is the one of Swin, whose code base the official
# training uses: 30 epochs from the 224 checkpoint, AdamW lr 2e-5 per 512
# images (4e-5 for 8 GPUs x 128), weight decay 1e-8, 5 warm-up epochs from
# 1e-3 of the lr, cosine to 1e-2 of it, the 224 augmentations at 384, and a
# plain resize to 384 for evaluation.
model = dict(
    backbone=dict(
        init_cfg=dict(
            type='Pretrained',
            checkpoint='checkpoints/groupmixformer-l_in1k.pth',
            prefix='backbone.')))

bgr_mean = [103.53, 116.28, 123.675]
bgr_std = [57.375, 57.12, 58.395]
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(
        type='RandomResizedCrop',
        scale=384,
        backend='pillow',
        interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(
        type='RandAugment',
        policies='timm_increasing',
        num_policies=2,
        total_level=10,
        magnitude_level=9,
        magnitude_std=0.5,
        hparams=dict(
            pad_val=[round(x) for x in bgr_mean], interpolation='bicubic')),
    dict(
        type='RandomErasing',
        erase_prob=0.25,
        mode='rand',
        min_area_ratio=0.02,
        max_area_ratio=1 / 3,
        fill_color=bgr_mean,
        fill_std=bgr_std),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=384, backend='pillow', interpolation='bicubic'),
    dict(type='PackInputs'),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = dict(dataset=dict(pipeline=test_pipeline))

optim_wrapper = dict(optimizer=dict(lr=4e-5, weight_decay=1e-8))
param_scheduler = [
    dict(
        type='LinearLR',
        start_factor=1e-3,
        by_epoch=True,
        end=5,
        convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=4e-7, by_epoch=True, begin=5)
]
train_cfg = dict(max_epochs=30)
