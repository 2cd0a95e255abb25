_base_ = './upernet_refiner-vit-s_8xb2-160k_ade20k-512x512.py'

# The one released L checkpoint, trained at 448 (convert it as the README
# says): its 28 x 28 position embedding is enlarged once, on loading, to the
# 32 x 32 patches of the 512x512 crops (img_size of the base config).
pretrained = 'checkpoints/refiner-vit-l_in1k-448px.pth'
embed_dims = 512
model = dict(
    backbone=dict(
        arch='l',
        drop_path_rate=0.2,
        out_indices=(7, 15, 23, 31),
        init_cfg=dict(checkpoint=pretrained)),
    neck=dict(in_channels=[embed_dims] * 4, out_channels=embed_dims),
    decode_head=dict(in_channels=[embed_dims] * 4),
    auxiliary_head=dict(in_channels=embed_dims))
