# The 3x COCO recipe of Swin / PVT: multi-scale training with random crops,
# 36 epochs, lr steps at 27 and 33. The detection configs take its pieces by
# name (their 1x bases already define train_pipeline, train_cfg and
# param_scheduler, which a second base may not define again):
#   train_pipeline = [..., {{_base_.ms_crop_resize}}, ...]
#   train_cfg = dict(max_epochs={{_base_.max_epochs}})
#   param_scheduler = {{_base_.param_scheduler_3x}}
max_epochs = 36
ms_crop_resize = dict(
    type='RandomChoice',
    transforms=[
        [
            dict(
                type='RandomChoiceResize',
                scales=[(480, 1333), (512, 1333), (544, 1333), (576, 1333),
                        (608, 1333), (640, 1333), (672, 1333), (704, 1333),
                        (736, 1333), (768, 1333), (800, 1333)],
                keep_ratio=True)
        ],
        [
            dict(
                type='RandomChoiceResize',
                scales=[(400, 1333), (500, 1333), (600, 1333)],
                keep_ratio=True),
            dict(
                type='RandomCrop',
                crop_type='absolute_range',
                crop_size=(384, 600),
                allow_negative_crop=True),
            dict(
                type='RandomChoiceResize',
                scales=[(480, 1333), (512, 1333), (544, 1333), (576, 1333),
                        (608, 1333), (640, 1333), (672, 1333), (704, 1333),
                        (736, 1333), (768, 1333), (800, 1333)],
                keep_ratio=True)
        ],
    ])
param_scheduler_3x = [
    dict(
        type='LinearLR', start_factor=0.001, by_epoch=False, begin=0,
        end=1000),
    dict(
        type='MultiStepLR',
        begin=0,
        end=max_epochs,
        by_epoch=True,
        milestones=[27, 33],
        gamma=0.1)
]
