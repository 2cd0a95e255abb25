_base_ = './refiner-vit-l_8xb128_in1k.py'

# Refiner-ViT-L at 448, the released checkpoint (reported 86.0 top-1; trained
# at 448 from scratch, scripts/refiner_l.yaml, with token labeling). Convert it
# with tools/model_converters/refiner2mmscalable.py; its position embedding
# is made for 28 x 28 patches, so it loads into this config as it is.
model = dict(backbone=dict(img_size=448))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(
        type='RandomResizedCrop',
        scale=448,
        backend='pillow',
        interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    {{_base_.rand_augment}}, {{_base_.random_erasing}},
    dict(type='PackInputs'),
]
# The released default config of L has crop ratio 1.13 (timm resizes to
# 448 / 1.13 and crops 448, padding the border); this evaluates with ratio 1.0.
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(
        type='ResizeEdge',
        scale=448,
        edge='short',
        backend='pillow',
        interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=448),
    dict(type='PackInputs'),
]
train_dataloader = dict(batch_size=64, dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = dict(dataset=dict(pipeline=test_pipeline))
# The released lr, 5e-4, for this batch (8 GPUs x 64).
optim_wrapper = dict(optimizer=dict(lr=5e-4))
auto_scale_lr = dict(base_batch_size=512)
