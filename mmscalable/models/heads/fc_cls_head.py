# Copyright (c) mmscalable contributors. All rights reserved.
from typing import Optional, Sequence

from mmpretrain.models.heads import ClsHead
from torch import Tensor

#: Initialization of the heads' Linear layers in the released models.
TRUNC_NORMAL_INIT = dict(type='TruncNormal', layer='Linear', std=.02, bias=0.)


class FCClsHead(ClsHead):
    """Base of the classification heads whose class scores come from ``fc``.

    Checks ``num_classes`` and keeps it with ``in_channels``; the subclass
    builds its layers, ``fc`` (``Linear(..., num_classes)``) among them. The
    scores are ``fc`` of :meth:`pre_logits`. Not registered: the subclasses
    are.

    Args:
        num_classes (int): Number of categories.
        in_channels (int): Channels of the input features.
        init_cfg (dict, optional): Initialization config.
            Defaults to truncated normal (std 0.02) for the Linear layers.
        **kwargs: Loss, ``topk`` and ``cal_acc`` of :class:`ClsHead`.
    """

    def __init__(self,
                 num_classes: int,
                 in_channels: int,
                 init_cfg: Optional[dict] = TRUNC_NORMAL_INIT,
                 **kwargs):
        super().__init__(init_cfg=init_cfg, **kwargs)
        if num_classes <= 0:
            raise ValueError(f'num_classes must be positive, got '
                             f'{num_classes}')
        self.num_classes = num_classes
        self.in_channels = in_channels

    def forward(self, feats: Sequence[Tensor]) -> Tensor:
        """The class scores, ``fc`` of :meth:`pre_logits`."""
        return self.fc(self.pre_logits(feats))
