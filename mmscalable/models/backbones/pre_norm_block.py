# Copyright (c) mmscalable contributors. All rights reserved.
"""The pre-norm transformer block that the backbones' blocks build on."""
from typing import Optional

import torch.nn as nn
from mmcv.cnn import build_norm_layer
from mmcv.cnn.bricks.drop import build_dropout
from mmcv.cnn.bricks.transformer import FFN
from mmengine.model import BaseModule
from torch import Tensor

from ..layers import ffn_eval_branch


class PreNormBlock(BaseModule):
    """A pre-norm transformer block: ``x + drop_path(attn(norm1(x)))``, then
    ``x + ffn(norm2(x))`` with mmcv's :class:`FFN` (its drop path is its
    ``dropout_layer``).

    A subclass calls ``super().__init__``, registers the layers that come
    before these (a position encoding), then calls
    :meth:`_init_pre_norm_layers` with its attention, so that the modules
    keep the official codes' order and names: ``norm1``, ``attn``,
    ``drop_path``, ``norm2``, ``ffn``. Its forward passes ``with_cp`` to
    :func:`~mmscalable.models.backbones.base.checkpoint_if`.

    Args:
        with_cp (bool): Recompute the block in backward to save memory.
            Defaults to False.
        init_cfg (dict, optional): Initialization config. Defaults to None.
    """

    def __init__(self,
                 with_cp: bool = False,
                 init_cfg: Optional[dict] = None):
        super().__init__(init_cfg=init_cfg)
        self.with_cp = with_cp

    def _init_pre_norm_layers(self, embed_dims: int, attn: nn.Module,
                              mlp_ratio: float, drop_rate: float,
                              drop_path_rate: float, norm_cfg: dict,
                              act_cfg: dict, **ffn_kwargs) -> None:
        """Register ``norm1``, ``attn``, ``drop_path``, ``norm2`` and
        ``ffn``.

        Args:
            embed_dims (int): Number of channels.
            attn (nn.Module): The attention, built by the subclass.
            mlp_ratio (float): Hidden channels of the FFN over
                ``embed_dims``.
            drop_rate (float): Dropout inside the FFN.
            drop_path_rate (float): Stochastic depth of both branches.
            norm_cfg (dict): ``norm1`` and ``norm2``.
            act_cfg (dict): FFN activation.
            **ffn_kwargs: Other arguments of the FFN (``add_identity``,
                ``layer_scale_init_value``).
        """
        self.norm1 = build_norm_layer(norm_cfg, embed_dims)[1]
        self.attn = attn
        self.drop_path = build_dropout(
            dict(type='DropPath', drop_prob=drop_path_rate))
        self.norm2 = build_norm_layer(norm_cfg, embed_dims)[1]
        self.ffn = FFN(
            embed_dims=embed_dims,
            feedforward_channels=int(embed_dims * mlp_ratio),
            num_fcs=2,
            ffn_drop=drop_rate,
            dropout_layer=dict(type='DropPath', drop_prob=drop_path_rate),
            act_cfg=act_cfg,
            **ffn_kwargs)

    def _residual_branches(self, x: Tensor, *attn_args) -> Tensor:
        """Both residual branches on (B, N, C) tokens, for an attention
        that returns tokens and an FFN that adds its identity;
        ``attn_args`` follow the normalised tokens in the attention's
        call."""
        if not self.training:
            # Dropout and drop path are identities in eval mode.
            x = x + self.attn(self.norm1(x), *attn_args)
            return ffn_eval_branch(self.ffn, self.norm2(x), x)
        x = x + self.drop_path(self.attn(self.norm1(x), *attn_args))
        return self.ffn(self.norm2(x), identity=x)
