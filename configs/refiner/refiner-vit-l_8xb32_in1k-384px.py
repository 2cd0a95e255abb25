_base_ = './refiner-vit-s_8xb32_in1k-384px.py'

# Refiner-ViT-L fine-tuned at 384 (reported 85.8 top-1) from an L classifier
# trained at 224 (refiner-vit-l_8xb128_in1k.py; the one released L checkpoint
# was trained at 448 and is evaluated by refiner-vit-l_8xb64_in1k-448px.py).
model = dict(
    backbone=dict(
        arch='l',
        drop_path_rate=0.2,
        init_cfg=dict(checkpoint='checkpoints/refiner-vit-l_in1k.pth')),
    head=dict(in_channels=512))
