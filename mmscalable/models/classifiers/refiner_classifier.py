# Copyright (c) mmscalable contributors. All rights reserved.
from typing import List, Optional, Sequence

import torch.nn.functional as F
from mmpretrain.models import ImageClassifier
from mmpretrain.structures import DataSample
from torch import Tensor

from mmscalable.registry import MODELS


def attention_map_similarity(maps: Sequence[Tensor]) -> Tensor:
    """The mean over consecutive pairs of maps (B, heads, N, N) of their
    cosine similarity across heads, averaged over images and positions:
    the released Refiner training's regulariser, which keeps the maps of
    successive blocks apart."""
    if len(maps) < 2:
        raise ValueError(f'the similarity of consecutive attention maps '
                         f'needs at least 2 maps, got {len(maps)}')
    total = sum(
        F.cosine_similarity(a, b, dim=1) for a, b in zip(maps[:-1], maps[1:]))
    return total.mean() / (len(maps) - 1)


@MODELS.register_module()
class RefinerClassifier(ImageClassifier):
    """An mmpretrain ``ImageClassifier`` with the attention-map regulariser of
    the released Refiner training.

    The loss adds ``cos_reg_weight`` times the cosine similarity, across
    heads, of the attention maps that consecutive blocks pass on, over the
    first ``cos_reg_blocks + 1`` blocks (``cos_reg_component: 12`` and
    ``0.1 * cos_loss.mean() / n_comn`` in the released scripts and loss).
    Predictions are those of ``ImageClassifier``.

    Args:
        cos_reg_blocks (int): Consecutive pairs of maps in the regulariser;
            0 turns it off. Defaults to 12.
        cos_reg_weight (float): Its weight. Defaults to 0.1.
        **kwargs: The arguments of ``ImageClassifier`` (a ``RefinerViT``
            backbone).
    """

    def __init__(self,
                 cos_reg_blocks: int = 12,
                 cos_reg_weight: float = 0.1,
                 **kwargs):
        super().__init__(**kwargs)
        if cos_reg_blocks < 0:
            raise ValueError(
                f'cos_reg_blocks must be >= 0, got {cos_reg_blocks}')
        if cos_reg_blocks and not hasattr(self.backbone,
                                          'forward_with_attn_maps'):
            raise TypeError(
                f'the attention-map regulariser needs a backbone that '
                f'returns its maps (RefinerViT), not '
                f'{type(self.backbone).__name__}; set cos_reg_blocks=0')
        if cos_reg_blocks >= getattr(self.backbone, 'depth', float('inf')):
            raise ValueError(
                f'cos_reg_blocks ({cos_reg_blocks}) must be smaller than the '
                f'backbone depth ({self.backbone.depth})')
        self.cos_reg_blocks = cos_reg_blocks
        self.cos_reg_weight = cos_reg_weight

    def loss(self, inputs: Tensor,
             data_samples: Optional[List[DataSample]] = None) -> dict:
        if not self.cos_reg_blocks:
            return super().loss(inputs, data_samples)
        feats, maps = self.backbone.forward_with_attn_maps(
            inputs, self.cos_reg_blocks + 1)
        if self.with_neck:
            feats = self.neck(feats)
        losses = self.head.loss(feats, data_samples)
        losses['loss_attn_cos'] = self.cos_reg_weight * \
            attention_map_similarity(maps)
        return losses
