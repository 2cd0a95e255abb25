_base_ = './upernet_refiner-vit-s_8xb2-160k_ade20k-512x512.py'

pretrained = 'checkpoints/refiner-vit-m_in1k.pth'
embed_dims = 420
model = dict(
    backbone=dict(
        arch='m',
        drop_path_rate=0.2,
        out_indices=(7, 15, 23, 31),
        init_cfg=dict(checkpoint=pretrained)),
    neck=dict(in_channels=[embed_dims] * 4, out_channels=embed_dims),
    decode_head=dict(in_channels=[embed_dims] * 4),
    auxiliary_head=dict(in_channels=embed_dims))
