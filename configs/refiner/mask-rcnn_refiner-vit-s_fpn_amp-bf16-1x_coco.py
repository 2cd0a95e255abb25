# Mixed-precision training of the 1x recipe: bfloat16 autocast (Ampere or
# newer GPUs). bfloat16 has float32's exponent range, so the loss is not
# scaled. Not on the CPU: mmcv 2.1.0's CPU NMS takes float32 scores only
# (backbones, UperNet and classifiers do train in bfloat16 there).
_base_ = ['./mask-rcnn_refiner-vit-s_fpn_1x_coco.py']
optim_wrapper = dict(
    type='mmscalable.AmpOptimWrapper',
    dtype='bfloat16',
    loss_scale=dict(enabled=False))
