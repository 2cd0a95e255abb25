# Mixed-precision training of the 1x recipe: float16 autocast with a dynamic
# loss scale (GPUs only). mmscalable's AmpOptimWrapper is mmengine's with the
# loss scaler of the training device; gradients are unscaled before clipping.
_base_ = ['./mask-rcnn_scalablevit-s_fpn_1x_coco.py']
optim_wrapper = dict(
    type='mmscalable.AmpOptimWrapper', dtype='float16', loss_scale='dynamic')
