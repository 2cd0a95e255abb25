# Copyright (c) mmscalable contributors. All rights reserved.
from typing import Optional, Sequence, Tuple

import torch.nn as nn
from mmpretrain.models.heads import ClsHead
from torch import Tensor

from mmscalable.registry import MODELS


@MODELS.register_module()
class RefinerClsHead(ClsHead):
    """The classification head of Refiner-ViT.

    ``fc(class token) + aux_weight * max over patch tokens of aux_fc(token)``,
    the released model's evaluation output. The released training adds a
    token-labelling loss on the auxiliary scores, which needs dense labels
    that mmpretrain's ImageNet pipeline does not provide; here both train
    and predict use the combined score.

    Args:
        num_classes (int): Number of categories.
        in_channels (int): Channels of the tokens.
        aux_weight (float): Weight of the auxiliary score. Defaults to 0.5.
        init_cfg (dict, optional): Initialization config.
            Defaults to truncated normal (std 0.02) for the Linear layers.
        **kwargs: Loss, ``topk`` and ``cal_acc`` of :class:`ClsHead`.
    """

    def __init__(self,
                 num_classes: int,
                 in_channels: int,
                 aux_weight: float = 0.5,
                 init_cfg: Optional[dict] = dict(
                     type='TruncNormal', layer='Linear', std=.02, bias=0.),
                 **kwargs):
        super().__init__(init_cfg=init_cfg, **kwargs)
        if num_classes <= 0:
            raise ValueError(f'num_classes must be positive, got '
                             f'{num_classes}')
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.aux_weight = aux_weight
        self.fc = nn.Linear(in_channels, num_classes)
        self.aux_fc = nn.Linear(in_channels, num_classes)

    def pre_logits(self, feats: Tuple[Tensor]) -> Tensor:
        """The tokens (B, 1 + N, C) of the last output, class token first."""
        return feats[-1]

    def forward(self, feats: Sequence[Tensor]) -> Tensor:
        tokens = self.pre_logits(feats)
        aux = self.aux_fc(tokens[:, 1:]).max(dim=1)[0]
        return self.fc(tokens[:, 0]) + self.aux_weight * aux
