# Embedded demo classification set (ImageNet-style class folders), generated
# by `python tools/misc/make_demo_data.py` (or `--make-demo-data` of
# tools/train.py, tools/test.py and browse_dataset.py); without it the tools
# stop and say so.
# 120 train / 30 val images of 64x64 per class: one circle, square or
# triangle.
dataset_type = 'CustomDataset'
data_root = 'data/demo_cls/'
# Same as mmscalable.datasets.DEMO_CLS_CLASSES. CustomDataset numbers the
# class folders alphabetically: keep these names sorted.
metainfo = dict(classes=('circle', 'square', 'triangle'))

data_preprocessor = dict(
    num_classes=3,
    # RGB format normalization parameters
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    # convert image from BGR to RGB
    to_rgb=True,
)

# The images are used at their generated size (64x64).
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='PackInputs'),
]

# Worker processes cost more than they save on images this small.
train_dataloader = dict(
    batch_size=16,
    num_workers=0,
    persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        data_prefix='train',
        with_label=True,
        metainfo=metainfo,
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=16,
    num_workers=0,
    persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        data_prefix='val',
        with_label=True,
        metainfo=metainfo,
        pipeline=test_pipeline))
val_evaluator = dict(type='Accuracy', topk=(1, ))

test_dataloader = val_dataloader
test_evaluator = val_evaluator
