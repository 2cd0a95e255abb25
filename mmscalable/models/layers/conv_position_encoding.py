# Copyright (c) mmscalable contributors. All rights reserved.
"""Token/map reshapes and the conditional position encoding conv."""
from typing import Optional, Sequence

import torch.nn as nn
from mmengine.model import BaseModule
from torch import Tensor


def tokens_to_map(x: Tensor, hw_shape: Sequence[int]) -> Tensor:
    """(B, N, C) tokens in raster order to a (B, C, H, W) map."""
    return x.transpose(1, 2).reshape(x.shape[0], x.shape[2], *hw_shape)


def map_to_tokens(x: Tensor) -> Tensor:
    """(B, C, H, W) map to (B, N, C) tokens in raster order."""
    return x.flatten(2).transpose(1, 2)


class ConvPositionEncoding(BaseModule):
    """Conditional position encoding (CPVT's PEG): ``x + dwconv(x)``.

    ScalableViT applies it after the first block of a stage, GroupMixFormer
    before every block.

    Args:
        embed_dims (int): Number of channels.
        kernel_size (int): Side of the depthwise kernel. Defaults to 3.
        init_cfg (dict, optional): Initialization config. Defaults to None.
    """

    def __init__(self,
                 embed_dims: int,
                 kernel_size: int = 3,
                 init_cfg: Optional[dict] = None):
        super().__init__(init_cfg=init_cfg)
        self.proj = nn.Conv2d(
            embed_dims,
            embed_dims,
            kernel_size,
            padding=kernel_size // 2,
            groups=embed_dims)

    def forward(self, x: Tensor, hw_shape: Sequence[int]) -> Tensor:
        """Encode (B, N, C) tokens of an (H, W) map; same shape out."""
        return x + map_to_tokens(self.proj(tokens_to_map(x, hw_shape)))
