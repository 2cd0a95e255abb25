# Copyright (c) mmscalable contributors. All rights reserved.
"""GroupMixFormer (Ge et al., "Advancing Vision Transformers with Group-Mix
Attention", 2023).

The layout follows the released classification code, so that its checkpoints
load after a key conversion (``mmscalable.models.checkpoint.key_rules``), and
extends it to dense prediction: any input size (stage sizes follow the convs'
ceil division instead of the official token-count assertions), a
configurable norm (BN on one process, SyncBN on many, from the same weights),
``out_indices``, ``frozen_stages``, ``norm_eval`` and ``with_cp``.
"""
import math
import warnings
from typing import Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from mmcv.cnn import ConvModule, DepthwiseSeparableConvModule, build_norm_layer
from mmengine.model import BaseModule, ModuleList, Sequential
from torch import Tensor

from mmscalable.registry import MODELS
from ..checkpoint import (groupmixformer_official_to_mmcls,
                          is_official_groupmixformer)
from ..layers import ConvPositionEncoding, GroupMixAttention
from .base import (BaseBackbone, check_image_input, checkpoint_if,
                   init_transformer_weights, parse_arch, parse_out_indices,
                   stage_drop_path_rates)
from .pre_norm_block import PreNormBlock


# Token and map views of each other that keep the layout: a channels-last
# map's tokens are contiguous and the reverse. (``tokens_to_map`` gives the
# map of one image a batch stride for which convs do not keep the
# channels-last layout, and ``map_to_tokens`` of their NCHW output then
# makes transposed tokens.)
def _tokens_of(x: Tensor) -> Tensor:
    """The (B, H * W, C) tokens of a (B, C, H, W) map, a view."""
    return x.permute(0, 2, 3, 1).flatten(1, 2)


def _map_of(x: Tensor, hw_shape: Sequence[int]) -> Tensor:
    """The (B, C, H, W) map of (B, H * W, C) tokens, a view."""
    return x.unflatten(1, tuple(hw_shape)).permute(0, 3, 1, 2)


class GroupMixBlock(PreNormBlock):
    """A conv position encoding, then pre-norm Group-Mix Attention and MLP.

    Args:
        embed_dims (int): Number of channels.
        num_heads (int): Attention heads. Defaults to 8.
        mlp_ratio (float): Hidden channels of the MLP over ``embed_dims``.
            Defaults to 4.
        qkv_bias (bool): Bias in the qkv projection. Defaults to True.
        drop_rate (float): Dropout after the projections. Defaults to 0.
        drop_path_rate (float): Stochastic depth of both branches.
            Defaults to 0.
        norm_cfg (dict): Norm of the attention's aggregators.
            Defaults to ``dict(type='BN')``.
        block_norm_cfg (dict): Pre-norms of the block.
            Defaults to ``dict(type='LN', eps=1e-6)``.
        act_cfg (dict): Activation of the aggregators.
            Defaults to ``dict(type='HSwish')``.
        ffn_act_cfg (dict): MLP activation. Defaults to ``dict(type='GELU')``.
        with_cp (bool): Recompute the block in backward to save memory.
            Defaults to False.
        attn_impl (str): The attention's ``impl``, ``'fast'`` or
            ``'reference'``. Defaults to ``'fast'``.
        init_cfg (dict, optional): Initialization config. Defaults to None.
    """

    def __init__(self,
                 embed_dims: int,
                 num_heads: int = 8,
                 mlp_ratio: float = 4.,
                 qkv_bias: bool = True,
                 drop_rate: float = 0.,
                 drop_path_rate: float = 0.,
                 norm_cfg: dict = dict(type='BN'),
                 block_norm_cfg: dict = dict(type='LN', eps=1e-6),
                 act_cfg: dict = dict(type='HSwish'),
                 ffn_act_cfg: dict = dict(type='GELU'),
                 with_cp: bool = False,
                 attn_impl: str = 'fast',
                 init_cfg: Optional[dict] = None):
        super().__init__(with_cp=with_cp, init_cfg=init_cfg)
        self.pos_conv = ConvPositionEncoding(embed_dims)
        attn = GroupMixAttention(
            embed_dims,
            num_heads,
            qkv_bias=qkv_bias,
            proj_drop_rate=drop_rate,
            norm_cfg=norm_cfg,
            act_cfg=act_cfg,
            impl=attn_impl)
        self._init_pre_norm_layers(
            embed_dims,
            attn,
            mlp_ratio=mlp_ratio,
            drop_rate=drop_rate,
            drop_path_rate=drop_path_rate,
            norm_cfg=block_norm_cfg,
            act_cfg=ffn_act_cfg)

    def forward(self, x: Tensor, hw_shape: Sequence[int]) -> Tensor:
        """Tokens (B, N, C) of an (H, W) map; same shape out."""

        def _inner_forward(x):
            # ``pos_conv(x, hw_shape)`` on views that keep the layout.
            x = x + _tokens_of(self.pos_conv.proj(_map_of(x, hw_shape)))
            return self._residual_branches(x, hw_shape)

        return checkpoint_if(self.with_cp, _inner_forward, x)


class GroupMixStage(BaseModule):
    """A separable-conv patch embedding followed by Group-Mix blocks.

    Args:
        in_channels (int): Input channels of the patch embedding.
        embed_dims (int): Channels of the stage.
        depth (int): Number of blocks.
        stride (int): Stride of the patch embedding.
        mlp_ratio (float): MLP hidden ratio of the blocks.
        drop_path_rates (Sequence[float]): Stochastic depth per block.
        norm_cfg (dict): Norm of the patch embedding and the aggregators.
        act_cfg (dict): Activation of the patch embedding and aggregators.
        block_cfg (dict): Other keyword arguments of the blocks.
        init_cfg (dict, optional): Initialization config. Defaults to None.
    """

    def __init__(self,
                 in_channels: int,
                 embed_dims: int,
                 depth: int,
                 stride: int,
                 mlp_ratio: float,
                 drop_path_rates: Sequence[float],
                 norm_cfg: dict = dict(type='BN'),
                 act_cfg: dict = dict(type='HSwish'),
                 block_cfg: dict = dict(),
                 init_cfg: Optional[dict] = None):
        super().__init__(init_cfg=init_cfg)
        self.patch_embed = DepthwiseSeparableConvModule(
            in_channels,
            embed_dims,
            3,
            stride=stride,
            padding=1,
            bias=False,
            norm_cfg=norm_cfg,
            act_cfg=act_cfg,
            dw_norm_cfg=None,
            dw_act_cfg=None)
        self.blocks = ModuleList([
            GroupMixBlock(
                embed_dims,
                mlp_ratio=mlp_ratio,
                drop_path_rate=drop_path_rates[i],
                norm_cfg=norm_cfg,
                act_cfg=act_cfg,
                **block_cfg) for i in range(depth)
        ])

    def forward(self, x: Tensor) -> Tensor:
        """(B, C_in, H, W) to (B, C, ceil(H / stride), ceil(W / stride)).

        The blocks' tokens are a view of the patch embedding's map and the
        output a view of theirs, so that a channels-last map (see
        ``GroupMixFormer.channels_last``) gives contiguous tokens, which
        the blocks' norms and linear layers read in place.
        """
        x = self.patch_embed(x)
        hw_shape = x.shape[2:]
        tokens = _tokens_of(x)
        for block in self.blocks:
            tokens = block(tokens, hw_shape)
        return _map_of(tokens, hw_shape)


@MODELS.register_module()
class GroupMixFormer(BaseBackbone):
    """GroupMixFormer backbone.

    A conv stem (stride 4) and four stages of Group-Mix Attention blocks with
    strides 1, 2, 2, 2, so that the stage outputs have strides 4, 8, 16, 32.

    Args:
        arch (str | dict): ``'m'``, ``'t'``, ``'s'``, ``'b'``, ``'l'`` (or
            ``'mini'``, ``'tiny'``, ``'small'``, ``'base'``, ``'large'``), or a
            dict with keys ``embed_dims``, ``depths`` and ``mlp_ratios`` (one
            value per stage). Defaults to ``'s'``.
        in_channels (int): Input image channels. Defaults to 3.
        num_heads (int): Attention heads of every block. Defaults to 8.
        qkv_bias (bool): Bias in the qkv projections. Defaults to True.
        drop_rate (float): Dropout after projections. Defaults to 0.
        drop_path_rate (float): Stochastic depth, increased linearly over all
            blocks up to this value. Defaults to 0.1.
        out_indices (Sequence[int] | int): Stages whose outputs (B, C_i, H_i,
            W_i) are returned. Defaults to (0, 1, 2, 3).
        final_norm (bool): Normalise the last stage's output with
            ``norm_cfg``, as the classifier does before pooling (official
            ``norm4``). Defaults to False.
        frozen_stages (int): Stages to freeze (parameters fixed, eval mode);
            the stem is frozen with the first. -1 freezes none.
            Defaults to -1.
        norm_eval (bool): Keep the BatchNorms in eval mode (frozen
            statistics) while training. Defaults to False.
        norm_cfg (dict): Norm of the stem, patch embeddings and aggregators.
            The official code uses SyncBN; ``dict(type='BN')`` runs on one
            process with the same weights. Defaults to ``dict(type='BN')``.
        block_norm_cfg (dict): Pre-norms of the blocks.
            Defaults to ``dict(type='LN', eps=1e-6)``.
        act_cfg (dict): Activation of the convs. Defaults to
            ``dict(type='HSwish')``.
        ffn_act_cfg (dict): MLP activation. Defaults to ``dict(type='GELU')``.
        with_cp (bool): Gradient checkpointing of every block.
            Defaults to False.
        attn_impl (str): How the attentions are computed: ``'fast'`` (fused
            segment convs and norms, on channels-last maps) or
            ``'reference'`` (one module per segment as in the official
            code; same weights, same results, for benchmarks).
            Defaults to ``'fast'``.
        init_cfg (dict, optional): Initialization config. ``type='Pretrained'``
            loads a checkpoint of this backbone, of an mmpretrain classifier
            (with ``prefix='backbone.'``) or an official GroupMixFormer
            checkpoint (converted on the fly). Defaults to None.
    """
    arch_zoo = {
        **dict.fromkeys(
            ['m', 'mini'], {
                'embed_dims': [40, 80, 160, 160],
                'depths': [3, 3, 12, 4],
                'mlp_ratios': [4, 4, 4, 4],
            }),
        **dict.fromkeys(
            ['t', 'tiny'], {
                'embed_dims': [80, 160, 200, 240],
                'depths': [4, 4, 12, 4],
                'mlp_ratios': [4, 4, 4, 4],
            }),
        **dict.fromkeys(
            ['s', 'small'], {
                'embed_dims': [80, 160, 320, 320],
                'depths': [2, 4, 12, 4],
                'mlp_ratios': [4, 4, 4, 4],
            }),
        **dict.fromkeys(
            ['b', 'base'], {
                'embed_dims': [200, 240, 320, 480],
                'depths': [8, 8, 12, 8],
                'mlp_ratios': [2, 2, 4, 4],
            }),
        **dict.fromkeys(
            ['l', 'large'], {
                'embed_dims': [240, 320, 360, 480],
                'depths': [8, 10, 30, 10],
                'mlp_ratios': [4, 4, 2, 2],
            }),
    }
    num_stages = 4
    stage_strides = (1, 2, 2, 2)
    # Total stride of the stem.
    stem_stride = 4
    official_converter = staticmethod(groupmixformer_official_to_mmcls)
    is_official = staticmethod(is_official_groupmixformer)
    # A checkpoint without the classifier's final norm.
    optional_missing = ('norm3.', )

    def __init__(self,
                 arch: Union[str, dict] = 's',
                 in_channels: int = 3,
                 num_heads: int = 8,
                 qkv_bias: bool = True,
                 drop_rate: float = 0.,
                 drop_path_rate: float = 0.1,
                 out_indices: Union[Sequence[int], int] = (0, 1, 2, 3),
                 final_norm: bool = False,
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 norm_cfg: dict = dict(type='BN'),
                 block_norm_cfg: dict = dict(type='LN', eps=1e-6),
                 act_cfg: dict = dict(type='HSwish'),
                 ffn_act_cfg: dict = dict(type='GELU'),
                 with_cp: bool = False,
                 attn_impl: str = 'fast',
                 init_cfg: Optional[dict] = None):
        super().__init__(
            frozen_stages=frozen_stages,
            norm_eval=norm_eval,
            with_cp=with_cp,
            init_cfg=init_cfg)
        self.arch_settings = parse_arch(arch, self.arch_zoo,
                                        ('embed_dims', 'depths', 'mlp_ratios'),
                                        self.num_stages, 'GroupMixFormer')
        self.embed_dims = list(self.arch_settings['embed_dims'])
        self.in_channels = in_channels
        self.attn_impl = attn_impl
        self.out_indices = parse_out_indices(out_indices, self.num_stages)
        self.final_norm = final_norm

        self.stem = self._build_stem(norm_cfg, act_cfg)
        self.stages = self._build_stages(
            drop_path_rate,
            norm_cfg,
            act_cfg,
            block_cfg=dict(
                num_heads=num_heads,
                qkv_bias=qkv_bias,
                drop_rate=drop_rate,
                block_norm_cfg=block_norm_cfg,
                ffn_act_cfg=ffn_act_cfg,
                with_cp=with_cp,
                attn_impl=attn_impl))
        last = self.num_stages - 1
        if final_norm:
            self.add_module(
                f'norm{last}',
                build_norm_layer(norm_cfg, self.embed_dims[last])[1])
        self._freeze_stages()

    def _build_stem(self, norm_cfg: dict, act_cfg: dict) -> Sequential:
        """Two stride-2 3x3 convs to half, then all, of the first stage's
        channels."""
        stem_dims = self.embed_dims[0]
        stem_convs = []
        with warnings.catch_warnings():
            # The official stem convs have a bias before their BatchNorm;
            # keep it (the checkpoints have it) without ConvModule's warning.
            warnings.filterwarnings('ignore', 'Unnecessary conv bias')
            for conv_in, conv_out in ((self.in_channels, stem_dims // 2),
                                      (stem_dims // 2, stem_dims)):
                stem_convs.append(
                    ConvModule(
                        conv_in,
                        conv_out,
                        3,
                        stride=2,
                        padding=1,
                        bias=True,
                        norm_cfg=norm_cfg,
                        act_cfg=act_cfg))
        return Sequential(*stem_convs)

    def _build_stages(self, drop_path_rate: float, norm_cfg: dict,
                      act_cfg: dict, block_cfg: dict) -> ModuleList:
        depths = self.arch_settings['depths']
        stages = ModuleList()
        stage_in_channels = self.embed_dims[0]
        for i, drop_path_rates in enumerate(
                stage_drop_path_rates(drop_path_rate, depths)):
            stages.append(
                GroupMixStage(
                    in_channels=stage_in_channels,
                    embed_dims=self.embed_dims[i],
                    depth=depths[i],
                    stride=self.stage_strides[i],
                    mlp_ratio=self.arch_settings['mlp_ratios'][i],
                    drop_path_rates=drop_path_rates,
                    norm_cfg=norm_cfg,
                    act_cfg=act_cfg,
                    block_cfg=block_cfg))
            stage_in_channels = self.embed_dims[i]
        return stages

    @property
    def channels_last(self) -> bool:
        """Whether the backbone runs on channels-last maps: with the fast
        attentions, where the convs run faster so (oneDNN) and every
        stage's tokens are a view of its map. The reference keeps the
        input's layout, as the official code."""
        return self.attn_impl == 'fast'

    def _init_default_weights(self):
        # The official initialization: timm's for Linear and LayerNorm,
        # PyTorch's defaults for convs and BatchNorm (ConvModule
        # re-initialises its convs with Kaiming normal; undo that).
        init_transformer_weights(self, nn.Conv2d.reset_parameters)

    def _frozen_modules(self, i):
        # The stem is frozen with the first stage.
        frozen = [self.stem, self.stages[i]] if i == 0 else [self.stages[i]]
        if i == self.num_stages - 1 and self.final_norm:
            frozen.append(getattr(self, f'norm{i}'))
        return frozen

    def forward(self, x: Tensor) -> Tuple[Tensor, ...]:
        """Forward.

        Args:
            x (Tensor): Images of shape (B, in_channels, H, W), any H, W of
                at least 32.

        Returns:
            tuple[Tensor]: For each of ``out_indices``, the stage output of
            shape (B, C_i, H_i, W_i), with H_i = ceil(H / s_i) for strides
            s_i = 4, 8, 16, 32 (rounded up at every stride-2 conv).
        """
        check_image_input(x, self.in_channels,
                          self.stem_stride * math.prod(self.stage_strides),
                          type(self).__name__)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self._forward_stages(self.stem(x), self.stages)
