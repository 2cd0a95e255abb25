# Copyright (c) mmscalable contributors. All rights reserved.
"""ViTDet's simple feature pyramid (Li et al., "Exploring Plain Vision
Transformer Backbones for Object Detection", 2022): multi-scale maps for FPN
heads from the single stride-16 map of a plain ViT such as Refiner-ViT."""
from typing import Optional, Sequence, Tuple

import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import ConvModule, build_activation_layer, build_norm_layer
from mmengine.model import BaseModule, ModuleList, Sequential
from torch import Tensor

from mmscalable.registry import MODELS


@MODELS.register_module('LN2d')
@MODELS.register_module()
class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of (B, C, H, W) maps.

    Registered as ``mmscalable.LayerNorm2d`` and ``mmscalable.LN2d``. mmdet
    and mmseg register no channels-first LayerNorm (mmpretrain's ``LN2d`` is
    in mmpretrain's scope only), so from their configs name it with the
    scope: ``norm_cfg=dict(type='mmscalable.LN2d')``.

    Args:
        num_channels (int): Channels C of the input.
        eps (float): Added to the variance. Defaults to 1e-5.
        elementwise_affine (bool): Learnable per-channel weight and bias.
            Defaults to True.
    """

    def __init__(self,
                 num_channels: int,
                 eps: float = 1e-5,
                 elementwise_affine: bool = True):
        super().__init__(
            num_channels, eps=eps, elementwise_affine=elementwise_affine)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1] != self.normalized_shape[0]:
            raise ValueError(f'{type(self).__name__} expects (B, '
                             f'{self.normalized_shape[0]}, H, W) maps, got '
                             f'{tuple(x.shape)}')
        x = F.layer_norm(
            x.permute(0, 2, 3, 1), self.normalized_shape, self.weight,
            self.bias, self.eps)
        return x.permute(0, 3, 1, 2).contiguous()


@MODELS.register_module()
class SimpleFeaturePyramid(BaseModule):
    """ViTDet's simple feature pyramid: maps of strides 4, 8, 16, 32 (and 64)
    from the one stride-16 map of a plain ViT.

    Each scale factor resamples the input map in its own way (4: a 2x2
    stride-2 deconv, norm, activation, another 2x2 stride-2 deconv, halving
    the channels at each deconv; 2: one such deconv; 1: the map itself; 0.5:
    2x2 stride-2 max pooling), then a 1x1 conv + norm and a 3x3 conv + norm
    (convs without bias) bring it to ``out_channels``. With ``num_outs`` one
    more than the scale factors, the last output is max-pooled once more
    (kernel 1, stride 2), as mmdet's FPN makes Mask R-CNN's P6.

    Outputs come finest first; on an (h, w) input map a factor s gives
    (h * s, w * s), rounded down for 0.5, and the extra level halves the last
    rounding up. With images padded to a multiple of 32 (mmdet's
    ``pad_size_divisor=32``) and a stride-16 input, the strides are exactly
    4, 8, 16 and 32, and the extra level is that of FPN's P6 (exactly 64 for
    multiples of 64).

    Args:
        in_channels (int): Channels of the input map.
        out_channels (int): Channels of every output.
        scale_factors (Sequence[float]): Resampling factors, each 4, 2, 1 or
            0.5, strictly decreasing (finest output first). Defaults to
            (4.0, 2.0, 1.0, 0.5).
        num_outs (int): Number of outputs: ``len(scale_factors)``, or one
            more for a max-pooled extra level. Defaults to 5.
        in_index (int): Which of the backbone outputs is the input map.
            Defaults to -1 (the last).
        norm_cfg (dict): Norm after each conv and between the deconvs of
            factor 4. Defaults to a channels-first LayerNorm,
            ``dict(type='mmscalable.LN2d', eps=1e-6)``.
        act_cfg (dict): Activation between the deconvs of factor 4.
            Defaults to ``dict(type='GELU')``.
        init_cfg (dict | list[dict], optional): Initialization config.
            Defaults to None.
    """
    supported_scales = (4.0, 2.0, 1.0, 0.5)

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 scale_factors: Sequence[float] = (4.0, 2.0, 1.0, 0.5),
                 num_outs: int = 5,
                 in_index: int = -1,
                 norm_cfg: dict = dict(type='mmscalable.LN2d', eps=1e-6),
                 act_cfg: dict = dict(type='GELU'),
                 init_cfg: Optional[dict] = None):
        super().__init__(init_cfg=init_cfg)
        scale_factors = self._check_args(in_channels, out_channels,
                                         scale_factors, num_outs)
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.scale_factors = scale_factors
        self.num_outs = num_outs
        self.in_index = in_index

        self.resamplers = ModuleList()
        self.outputs = ModuleList()
        for scale in scale_factors:
            if scale == 4.0:
                half = in_channels // 2
                channels = half // 2
                resampler = Sequential(
                    nn.ConvTranspose2d(in_channels, half, 2, stride=2),
                    build_norm_layer(norm_cfg, half)[1],
                    build_activation_layer(act_cfg),
                    nn.ConvTranspose2d(half, channels, 2, stride=2))
            elif scale == 2.0:
                channels = in_channels // 2
                resampler = nn.ConvTranspose2d(
                    in_channels, channels, 2, stride=2)
            elif scale == 1.0:
                channels = in_channels
                resampler = nn.Identity()
            else:
                channels = in_channels
                resampler = nn.MaxPool2d(2, stride=2)
            self.resamplers.append(resampler)
            self.outputs.append(
                Sequential(
                    ConvModule(
                        channels,
                        out_channels,
                        1,
                        bias=False,
                        norm_cfg=norm_cfg,
                        act_cfg=None),
                    ConvModule(
                        out_channels,
                        out_channels,
                        3,
                        padding=1,
                        bias=False,
                        norm_cfg=norm_cfg,
                        act_cfg=None)))

    def _check_args(self, in_channels: int, out_channels: int,
                    scale_factors: Sequence[float],
                    num_outs: int) -> Tuple[float, ...]:
        """Check the constructor's arguments; return ``scale_factors`` as a
        tuple.

        Raises:
            ValueError: Naming the argument that is wrong and why.
        """
        name = type(self).__name__
        for arg, value in (('in_channels', in_channels), ('out_channels',
                                                          out_channels)):
            if not isinstance(value, int) or isinstance(value, bool) \
                    or value < 1:
                raise ValueError(
                    f'{name}: {arg} must be a positive int, got {value!r}')
        scale_factors = tuple(scale_factors)
        unknown = [s for s in scale_factors if s not in self.supported_scales]
        if unknown or not scale_factors:
            raise ValueError(
                f'{name}: scale_factors must be taken from '
                f'{self.supported_scales}, got {scale_factors} (unknown: '
                f'{unknown})')
        if any(a <= b for a, b in zip(scale_factors, scale_factors[1:])):
            raise ValueError(
                f'{name}: scale_factors must be strictly decreasing (finest '
                f'output first), got {scale_factors}')
        if num_outs not in (len(scale_factors), len(scale_factors) + 1):
            raise ValueError(
                f'{name}: num_outs must be {len(scale_factors)} or '
                f'{len(scale_factors) + 1} for {len(scale_factors)} scale '
                f'factors, got {num_outs}')
        if 4.0 in scale_factors and in_channels < 4:
            raise ValueError(f'{name}: scale factor 4 quarters the channels; '
                             f'in_channels must be at least 4, got '
                             f'{in_channels}')
        return scale_factors

    def forward(self, inputs: Sequence[Tensor]) -> Tuple[Tensor, ...]:
        """The pyramid, finest first.

        Args:
            inputs (Sequence[Tensor]): Backbone outputs; ``inputs[in_index]``
                is the (B, in_channels, h, w) map.

        Returns:
            tuple[Tensor]: ``num_outs`` maps (B, out_channels, h_i, w_i).
        """
        name = type(self).__name__
        if not isinstance(inputs, (tuple, list)):
            raise ValueError(
                f'{name} expects the tuple of backbone outputs, got '
                f'{type(inputs).__name__}')
        if not -len(inputs) <= self.in_index < len(inputs):
            raise ValueError(
                f'{name}: in_index {self.in_index} is out of range for '
                f'{len(inputs)} backbone outputs')
        x = inputs[self.in_index]
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f'{name} expects a (B, {self.in_channels}, h, w) map '
                f'(in_channels={self.in_channels}) at in_index '
                f'{self.in_index}, got {tuple(x.shape)}')
        if 0.5 in self.scale_factors and min(x.shape[2:]) < 2:
            raise ValueError(
                f'{name}: scale factor 0.5 needs a map of at least 2x2, got '
                f'{tuple(x.shape[2:])}')
        outs = [
            output(resampler(x))
            for resampler, output in zip(self.resamplers, self.outputs)
        ]
        if self.num_outs > len(outs):
            outs.append(F.max_pool2d(outs[-1], 1, stride=2))
        return tuple(outs)
