# Copyright (c) mmscalable contributors. All rights reserved.
"""Mixed-precision training that also runs on the CPU."""
from typing import Union

import torch
from mmengine.device import get_device
from mmengine.optim import AmpOptimWrapper as MMEngineAmpOptimWrapper
from mmengine.optim import OptimWrapper

from mmscalable.registry import OPTIM_WRAPPERS
from mmscalable.torch_compat import grad_scaler


@OPTIM_WRAPPERS.register_module()
class AmpOptimWrapper(MMEngineAmpOptimWrapper):
    """mmengine's ``AmpOptimWrapper`` on any device torch autocasts on.

    mmengine 0.10.7 refuses to build its wrapper without a GPU and takes its
    loss scaler from ``torch.cuda.amp``. This one scales the loss with
    ``torch.amp.GradScaler`` of the device the run trains on, so the AMP
    configs train (and are tested) on the CPU too; on a GPU it behaves as
    mmengine's. Everything else (autocast context, gradient clipping on the
    unscaled gradients, the scaler in ``state_dict``) is inherited.

    Args:
        loss_scale (str | float | dict): ``'dynamic'`` (the default) for a
            dynamic loss scale, a float for a static one, or the keyword
            arguments of ``torch.amp.GradScaler``.
        dtype (str | torch.dtype, optional): The autocast dtype,
            ``'float16'`` or ``'bfloat16'``; None for the device's default
            (float16 on GPUs, bfloat16 on the CPU).
        **kwargs: The arguments of ``OptimWrapper`` (``optimizer``,
            ``clip_grad``, ``accumulative_counts``).
    """

    def __init__(self,
                 loss_scale: Union[str, float, dict] = 'dynamic',
                 dtype: Union[str, torch.dtype, None] = None,
                 **kwargs) -> None:
        # Skips mmengine's __init__ (its device assertion), not its logic.
        OptimWrapper.__init__(self, **kwargs)
        device = get_device()
        self._scale_update_param = None
        if loss_scale == 'dynamic':
            self.loss_scaler = grad_scaler(device)
        elif isinstance(loss_scale, float):
            self._scale_update_param = loss_scale
            self.loss_scaler = grad_scaler(device, init_scale=loss_scale)
        elif isinstance(loss_scale, dict):
            self.loss_scaler = grad_scaler(device, **loss_scale)
        else:
            raise TypeError('loss_scale must be "dynamic", a float or a '
                            f'dict, got {loss_scale!r}')
        if isinstance(dtype, str):
            if dtype not in self.valid_dtypes:
                raise ValueError(f'dtype must be one of {self.valid_dtypes}, '
                                 f'got {dtype!r}')
            dtype = getattr(torch, dtype)
        if dtype is not None and not isinstance(dtype, torch.dtype):
            raise TypeError(f'dtype must be a str or torch.dtype, got {dtype}')
        if device == 'cpu' and dtype == torch.float16:
            raise ValueError('float16 autocast needs a GPU; on the CPU use '
                             "dtype='bfloat16'")
        self.cast_dtype = dtype
