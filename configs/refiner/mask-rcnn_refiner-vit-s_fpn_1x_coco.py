_base_ = [
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py',
    'mmdet::_base_/datasets/coco_instance.py',
    'mmdet::_base_/schedules/schedule_1x.py',
    'mmdet::_base_/default_runtime.py'
]
custom_imports = dict(
    imports=['mmscalable.models'], allow_failed_imports=False)

# Refiner (Zhou et al., 2021) published no detection recipe (its repository
# has ImageNet classification only). This follows ViTDet's for plain ViTs
# (Li et al., 2022): the last stride-16 map through a simple feature pyramid
# (mmscalable.SimpleFeaturePyramid, LayerNorm, out_channels 256, P6 by max
# pooling), AdamW lr 1e-4, weight decay 0.1 but none on the position
# embedding, class token and norms, the pretraining position embedding
# interpolated to every image's grid. It keeps mmdet's Mask R-CNN heads, data
# pipeline and 1x schedule (12 epochs, batch 16), with gradient clipping;
# ViTDet's layer-wise lr decay, large-scale jitter, long schedule and
# windowed attention are not used.
# An ImageNet-1k classifier checkpoint: convert the official one with
# tools/model_converters/refiner2mmscalable.py (see the README).
pretrained = 'checkpoints/refiner-vit-s_in1k.pth'
embed_dims = 384
model = dict(
    # As the released classifiers: mean = std = 127.5, RGB. Padding to a
    # multiple of 32 gives the pyramid exact strides 4 to 32.
    data_preprocessor=dict(
        mean=[127.5, 127.5, 127.5],
        std=[127.5, 127.5, 127.5],
        bgr_to_rgb=True,
        pad_size_divisor=32),
    backbone=dict(
        _delete_=True,
        type='mmscalable.RefinerViT',
        arch='s',
        drop_path_rate=0.1,
        # The output of the last block (through the final norm), stride 16.
        out_indices=(15, ),
        out_type='featmap',
        final_norm=True,
        # Frozen BatchNorm statistics (those of the attention-map refinement
        # and the stem): with 2 images per GPU, batch statistics of the
        # refined maps are noisy and cost extra passes over the maps; the
        # pretrained running statistics are kept, the affine weights train.
        # At 800x1333 the N x N maps are computed in exact chunks of query
        # rows (attn_impl='fast', the default), never all at once.
        norm_eval=True,
        init_cfg=dict(
            type='Pretrained', checkpoint=pretrained, prefix='backbone.')),
    neck=dict(
        _delete_=True,
        type='mmscalable.SimpleFeaturePyramid',
        in_channels=embed_dims,
        out_channels=256,
        scale_factors=(4.0, 2.0, 1.0, 0.5),
        num_outs=5,
        in_index=-1,
        norm_cfg=dict(type='mmscalable.LN2d', eps=1e-6)))

optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(
        _delete_=True,
        type='AdamW',
        lr=0.0001,
        betas=(0.9, 0.999),
        weight_decay=0.1),
    clip_grad=dict(max_norm=1.0, norm_type=2),
    # No weight decay on the position embedding, class token and norms.
    paramwise_cfg=dict(
        norm_decay_mult=0.,
        custom_keys={
            'pos_embed': dict(decay_mult=0.),
            'cls_token': dict(decay_mult=0.)
        }))
# Batch 16 = 8 GPUs x 2 images; `--auto-scale-lr` rescales the lr for others.
auto_scale_lr = dict(enable=False, base_batch_size=16)
# Each image attends over its own tokens only, not over the padding that
# batches it with larger images: the refined maps are not normalised over the
# keys, so padded tokens would change its features (see the README).
custom_hooks = [dict(type='mmscalable.PaddingMaskHook')]
