_base_ = './refiner-vit-s_8xb128_in1k.py'

model = dict(
    backbone=dict(arch='m', drop_path_rate=0.25), head=dict(in_channels=420))

# Crop ratio 1.0.
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(
        type='ResizeEdge',
        scale=224,
        edge='short',
        backend='pillow',
        interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=224),
    dict(type='PackInputs'),
]
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = dict(dataset=dict(pipeline=test_pipeline))
