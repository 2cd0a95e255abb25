_base_ = [
    'mmseg::_base_/models/upernet_vit-b16_ln_mln.py',
    'mmseg::_base_/datasets/ade20k.py', 'mmseg::_base_/default_runtime.py',
    'mmseg::_base_/schedules/schedule_160k.py'
]
custom_imports = dict(
    imports=['mmscalable.models'], allow_failed_imports=False)

# Refiner (Zhou et al., 2021) published no segmentation recipe (its
# repository has ImageNet classification only). This is mmseg's ViT UperNet
# recipe (vit/vit_vit-b16_mln_upernet_8xb2-160k_ade20k-512x512.py and its
# DeiT-S variant): four block outputs at stride 16 resampled by 4 / 2 / 1 /
# 0.5 in a multi-level neck (out_channels = the backbone's channels, as
# mmseg's DeiT-S config), UperNet with an FCN auxiliary head on the last
# output, AdamW lr 6e-5, weight decay 0.01 but none on the position
# embedding, class token and norms, 1500 iterations of linear warm-up, poly
# decay, 160k iterations at batch 16.
# An ImageNet-1k classifier checkpoint: convert the official one with
# tools/model_converters/refiner2mmscalable.py (see the README); its 14 x 14
# position embedding is resized to the 32 x 32 patches of 512x512 crops on
# loading.
pretrained = 'checkpoints/refiner-vit-s_in1k.pth'
embed_dims = 384
crop_size = (512, 512)
# As the released classifiers: mean = std = 127.5, RGB.
data_preprocessor = dict(
    size=crop_size, mean=[127.5, 127.5, 127.5], std=[127.5, 127.5, 127.5])
model = dict(
    data_preprocessor=data_preprocessor,
    pretrained=None,
    backbone=dict(
        _delete_=True,
        type='mmscalable.RefinerViT',
        arch='s',
        img_size=crop_size,
        drop_path_rate=0.1,
        # Evenly spaced refiner blocks (the second of each pair), the last
        # through the final norm.
        out_indices=(3, 7, 11, 15),
        out_type='featmap',
        final_norm=True,
        # Frozen BatchNorm statistics (those of the attention-map refinement
        # and the stem): with 2 images per GPU, batch statistics of the
        # refined maps are noisy and cost extra passes over the maps; the
        # pretrained running statistics are kept, the affine weights train.
        norm_eval=True,
        # The N x N maps in exact chunks of query rows, never all at once.
        # One image's maps of one block (36 x 1025^2 floats for S and M,
        # 144 MiB; 48 x 1025^2 for L, 192 MiB) are under the default
        # 256 MiB memory budget of attn_impl='fast', which would then keep
        # every block's maps for backward: 18.7 GiB for the backbone of S at
        # batch 2 against about 2 GiB chunked (docs/model_zoo.md).
        attn_memory_budget=128 * 2**20,
        init_cfg=dict(
            type='Pretrained', checkpoint=pretrained, prefix='backbone.')),
    neck=dict(
        type='MultiLevelNeck',
        in_channels=[embed_dims] * 4,
        out_channels=embed_dims,
        scales=[4, 2, 1, 0.5]),
    decode_head=dict(in_channels=[embed_dims] * 4, num_classes=150),
    auxiliary_head=dict(in_channels=embed_dims, num_classes=150))

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(
        type='AdamW', lr=0.00006, betas=(0.9, 0.999), weight_decay=0.01),
    # No weight decay on the position embedding, class token and norms.
    paramwise_cfg=dict(
        norm_decay_mult=0.,
        custom_keys={
            'pos_embed': dict(decay_mult=0.),
            'cls_token': dict(decay_mult=0.)
        }))
param_scheduler = [
    dict(
        type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=1500),
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
# Each image attends over its own tokens only, not over the padding that
# batches it with larger images: the refined maps are not normalised over the
# keys, so padded tokens would change its features (see the README).
custom_hooks = [dict(type='mmscalable.PaddingMaskHook')]
