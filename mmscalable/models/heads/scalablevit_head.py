# Copyright (c) mmscalable contributors. All rights reserved.
from typing import Tuple

import torch.nn as nn
from mmcv.cnn import build_activation_layer, build_norm_layer
from torch import Tensor

from mmscalable.registry import MODELS
from .fc_cls_head import FCClsHead


@MODELS.register_module()
class ScalableViTClsHead(FCClsHead):
    """The classification head of ScalableViT.

    ``Linear(C, hidden) -> LayerNorm -> GELU -> Linear(hidden, classes)`` on
    the pooled last-stage features, as in the released code.

    Args:
        num_classes (int): Number of categories.
        in_channels (int): Channels of the pooled features.
        hidden_dims (int): Width of the hidden layer. Defaults to 4096.
        norm_cfg (dict): Norm of the hidden layer.
            Defaults to ``dict(type='LN', eps=1e-6)``.
        act_cfg (dict): Activation of the hidden layer.
            Defaults to ``dict(type='GELU')``.
        **kwargs: ``init_cfg`` (truncated normal, std 0.02, for the Linear
            layers by default) of :class:`FCClsHead`; loss, ``topk`` and
            ``cal_acc`` of :class:`ClsHead`.
    """

    def __init__(self,
                 num_classes: int,
                 in_channels: int,
                 hidden_dims: int = 4096,
                 norm_cfg: dict = dict(type='LN', eps=1e-6),
                 act_cfg: dict = dict(type='GELU'),
                 **kwargs):
        super().__init__(num_classes, in_channels, **kwargs)
        self.hidden_fc = nn.Linear(in_channels, hidden_dims)
        self.hidden_norm = build_norm_layer(norm_cfg, hidden_dims)[1]
        self.act = build_activation_layer(act_cfg)
        self.fc = nn.Linear(hidden_dims, num_classes)

    def pre_logits(self, feats: Tuple[Tensor]) -> Tensor:
        """The hidden features of the last stage's pooled output."""
        return self.act(self.hidden_norm(self.hidden_fc(feats[-1])))
