_base_ = './refiner-vit-s_8xb32_in1k-384px.py'

# Refiner-ViT-M fine-tuned at 384 (reported 85.6 top-1); the recipe of S.
model = dict(
    backbone=dict(
        arch='m',
        drop_path_rate=0.2,
        init_cfg=dict(checkpoint='checkpoints/refiner-vit-m_in1k.pth')),
    head=dict(in_channels=420))
