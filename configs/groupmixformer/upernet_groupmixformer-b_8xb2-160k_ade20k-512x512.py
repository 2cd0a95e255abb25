_base_ = './upernet_groupmixformer-s_8xb2-160k_ade20k-512x512.py'

model = dict(
    backbone=dict(
        arch='b',
        drop_path_rate=0.3,
        init_cfg=dict(checkpoint='checkpoints/groupmixformer-b_in1k.pth')),
    decode_head=dict(in_channels=[200, 240, 320, 480]),
    auxiliary_head=dict(in_channels=320))
