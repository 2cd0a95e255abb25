# Copyright (c) mmscalable contributors. All rights reserved.
from typing import List, Sequence, Tuple

import torch
import torch.nn as nn
from mmpretrain.structures import DataSample
from torch import Tensor

from mmscalable.registry import MODELS
from .fc_cls_head import FCClsHead


@MODELS.register_module()
class RefinerClsHead(FCClsHead):
    """The classification head of Refiner-ViT.

    Predicts ``fc(class token) + aux_weight * max over patch tokens of
    aux_fc(token)``, the released model's evaluation output.

    Trains as the released token-labeling code does: the loss of
    ``fc(class token)`` plus ``token_loss_weight`` times a loss of
    ``aux_fc`` on every patch token. Its targets are the data samples'
    ``gt_token_score`` (N x num_classes soft token labels, one row per patch
    token) where every sample of the batch has them, else the image target
    given to every token, as the released loss does for image-level labels.

    Args:
        num_classes (int): Number of categories.
        in_channels (int): Channels of the tokens.
        aux_weight (float): Weight of the auxiliary score in predictions.
            Defaults to 0.5.
        token_loss_weight (float): Weight of the token loss (the released
            ``dense_weight``). Defaults to 0.5.
        **kwargs: ``init_cfg`` (truncated normal, std 0.02, for the Linear
            layers by default) of :class:`FCClsHead`; loss, ``topk`` and
            ``cal_acc`` of :class:`ClsHead`.
    """

    def __init__(self,
                 num_classes: int,
                 in_channels: int,
                 aux_weight: float = 0.5,
                 token_loss_weight: float = 0.5,
                 **kwargs):
        super().__init__(num_classes, in_channels, **kwargs)
        self.aux_weight = aux_weight
        self.token_loss_weight = token_loss_weight
        self.fc = nn.Linear(in_channels, num_classes)
        self.aux_fc = nn.Linear(in_channels, num_classes)

    def pre_logits(self, feats: Tuple[Tensor]) -> Tensor:
        """The tokens (B, 1 + N, C) of the last output, class token first."""
        return feats[-1]

    def forward(self, feats: Sequence[Tensor]) -> Tensor:
        tokens = self.pre_logits(feats)
        aux = self.aux_fc(tokens[:, 1:]).max(dim=1)[0]
        return self.fc(tokens[:, 0]) + self.aux_weight * aux

    def loss(self, feats: Tuple[Tensor], data_samples: List[DataSample],
             **kwargs) -> dict:
        """The class token's loss (``loss``, with the accuracy where
        ``cal_acc``) and the patch tokens' (``loss_token``)."""
        tokens = self.pre_logits(feats)
        losses = self._get_loss(self.fc(tokens[:, 0]), data_samples, **kwargs)
        aux = self.aux_fc(tokens[:, 1:])  # (B, N, num_classes)
        B, N, num_classes = aux.shape
        if all('gt_token_score' in s for s in data_samples):
            for sample in data_samples:
                if sample.gt_token_score.shape != (N, num_classes):
                    raise ValueError(
                        'gt_token_score of shape '
                        f'{tuple(sample.gt_token_score.shape)} does not fit '
                        f'the {N} patch tokens and {num_classes} classes of '
                        'the head')
            target = torch.stack([s.gt_token_score for s in data_samples])
            loss = -(target.to(aux.dtype) * aux.log_softmax(dim=-1)).sum(-1)
            loss = loss.mean()
        else:
            if 'gt_score' in data_samples[0]:
                target = torch.stack([s.gt_score for s in data_samples])
            else:
                target = torch.cat([s.gt_label for s in data_samples])
            loss = self.loss_module(
                aux.flatten(0, 1),
                target.repeat_interleave(N, dim=0),
                avg_factor=B * N,
                **kwargs)
        losses['loss_token'] = self.token_loss_weight * loss
        return losses
