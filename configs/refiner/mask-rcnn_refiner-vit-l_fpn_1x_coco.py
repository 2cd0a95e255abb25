_base_ = './mask-rcnn_refiner-vit-s_fpn_1x_coco.py'

# The one released L checkpoint, trained at 448 (convert it as the README
# says): its 28 x 28 position embedding loads as it is and is interpolated
# to each image's grid.
pretrained = 'checkpoints/refiner-vit-l_in1k-448px.pth'
model = dict(
    backbone=dict(
        arch='l',
        img_size=448,
        drop_path_rate=0.2,
        out_indices=(31, ),
        init_cfg=dict(checkpoint=pretrained)),
    neck=dict(in_channels=512))
