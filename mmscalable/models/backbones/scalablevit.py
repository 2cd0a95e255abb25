# Copyright (c) mmscalable contributors. All rights reserved.
"""ScalableViT (Yang et al., "ScalableViT: Rethinking the Context-oriented
Generalization of Vision Transformer", ECCV 2022).

The layout follows the released classification code, so that its checkpoints
load after a key conversion (``mmscalable.models.checkpoint.key_rules``), and
extends it to dense prediction: multi-scale NCHW outputs, each through its own
LayerNorm, and arbitrary input sizes.
"""
import math
from typing import Optional, Sequence, Tuple, Union

import torch.nn as nn
from mmcv.cnn import build_norm_layer
from mmcv.cnn.bricks.transformer import PatchEmbed
from mmengine.model import BaseModule, ModuleList
from mmengine.model.weight_init import normal_init
from torch import Tensor

from mmscalable.registry import MODELS
from ..checkpoint import is_official_scalablevit, scalablevit_official_to_mmcls
from ..layers import (ConvPositionEncoding, InteractiveWindowAttention,
                      ScalableSelfAttention, map_to_tokens, tokens_to_map)
from .base import (BaseBackbone, check_image_input, checkpoint_if,
                   init_transformer_weights, parse_arch, parse_out_indices,
                   stage_drop_path_rates)
from .pre_norm_block import PreNormBlock


class ScalableViTBlock(PreNormBlock):
    """A pre-norm transformer block with IWSA or SSA and an MLP.

    Args:
        embed_dims (int): Number of channels.
        num_heads (int): Number of attention heads.
        attn_type (str): ``'iwsa'`` (interactive window attention) or
            ``'ssa'`` (scalable self-attention).
        window_size (int): IWSA window side. Defaults to 7.
        spatial_ratio (int): SSA r_n. Defaults to 1.
        channel_ratio (float): SSA r_c. Defaults to 1.
        shared_kv (bool): SSA in the paper's original form (shared k/v
            projection). Defaults to False.
        mlp_ratio (float): Hidden channels of the MLP over ``embed_dims``.
            Defaults to 4.
        qkv_bias (bool): Bias in the q/k/v projections. Defaults to True.
        drop_rate (float): Dropout after the projections. Defaults to 0.
        attn_drop_rate (float): Dropout on attention weights. Defaults to 0.
        drop_path_rate (float): Stochastic depth of both branches.
            Defaults to 0.
        act_cfg (dict): MLP activation. Defaults to ``dict(type='GELU')``.
        norm_cfg (dict): Block norms.
            Defaults to ``dict(type='LN', eps=1e-6)``.
        with_cp (bool): Recompute the block in backward to save memory.
            Defaults to False.
        attn_impl (str): The attention's ``impl``, ``'fast'`` or
            ``'reference'``. Defaults to ``'fast'``.
        init_cfg (dict, optional): Initialization config. Defaults to None.
    """

    def __init__(self,
                 embed_dims: int,
                 num_heads: int,
                 attn_type: str,
                 window_size: int = 7,
                 spatial_ratio: int = 1,
                 channel_ratio: float = 1.,
                 shared_kv: bool = False,
                 mlp_ratio: float = 4.,
                 qkv_bias: bool = True,
                 drop_rate: float = 0.,
                 attn_drop_rate: float = 0.,
                 drop_path_rate: float = 0.,
                 act_cfg: dict = dict(type='GELU'),
                 norm_cfg: dict = dict(type='LN', eps=1e-6),
                 with_cp: bool = False,
                 attn_impl: str = 'fast',
                 init_cfg: Optional[dict] = None):
        super().__init__(with_cp=with_cp, init_cfg=init_cfg)
        if attn_type == 'iwsa':
            attn = InteractiveWindowAttention(
                embed_dims,
                num_heads,
                window_size=window_size,
                qkv_bias=qkv_bias,
                attn_drop_rate=attn_drop_rate,
                proj_drop_rate=drop_rate,
                impl=attn_impl)
        elif attn_type == 'ssa':
            attn = ScalableSelfAttention(
                embed_dims,
                num_heads,
                spatial_ratio=spatial_ratio,
                channel_ratio=channel_ratio,
                qkv_bias=qkv_bias,
                shared_kv=shared_kv,
                attn_drop_rate=attn_drop_rate,
                proj_drop_rate=drop_rate,
                impl=attn_impl)
        else:
            raise ValueError(
                f"attn_type must be 'iwsa' or 'ssa', got {attn_type!r}")
        self._init_pre_norm_layers(
            embed_dims,
            attn,
            mlp_ratio=mlp_ratio,
            drop_rate=drop_rate,
            drop_path_rate=drop_path_rate,
            norm_cfg=norm_cfg,
            act_cfg=act_cfg)

    def forward(self, x: Tensor, hw_shape: Sequence[int]) -> Tensor:
        """Tokens (B, N, C) of an (H, W) map; same shape out."""
        return checkpoint_if(self.with_cp, self._residual_branches, x,
                             hw_shape)


class ScalableViTStage(BaseModule):
    """A patch embedding followed by alternating IWSA and SSA blocks.

    Blocks at even indices use IWSA, at odd indices SSA; the position
    encoding conv follows the first block.

    Args:
        in_channels (int): Input channels of the patch embedding.
        embed_dims (int): Channels of the stage.
        depth (int): Number of blocks.
        num_heads (int): Attention heads.
        patch_size (int): Stride of the patch embedding.
        patch_kernel_size (int): Kernel of the patch embedding.
        drop_path_rates (Sequence[float]): Stochastic depth per block.
        norm_cfg (dict): Norm of the patch embedding and the blocks.
        block_cfg (dict): Other keyword arguments of the blocks.
        init_cfg (dict, optional): Initialization config. Defaults to None.
    """

    def __init__(self,
                 in_channels: int,
                 embed_dims: int,
                 depth: int,
                 num_heads: int,
                 patch_size: int,
                 patch_kernel_size: int,
                 drop_path_rates: Sequence[float],
                 norm_cfg: dict = dict(type='LN', eps=1e-6),
                 block_cfg: dict = dict(),
                 init_cfg: Optional[dict] = None):
        super().__init__(init_cfg=init_cfg)
        self.patch_embed = PatchEmbed(
            in_channels=in_channels,
            embed_dims=embed_dims,
            conv_type='Conv2d',
            kernel_size=patch_kernel_size,
            stride=patch_size,
            padding=patch_kernel_size // 2,
            norm_cfg=norm_cfg)
        self.blocks = ModuleList([
            ScalableViTBlock(
                embed_dims,
                num_heads,
                attn_type='iwsa' if i % 2 == 0 else 'ssa',
                drop_path_rate=drop_path_rates[i],
                norm_cfg=norm_cfg,
                **block_cfg) for i in range(depth)
        ])
        self.pos_conv = ConvPositionEncoding(embed_dims)

    def forward(self, x: Tensor) -> Tensor:
        """(B, C_in, H, W) to (B, C, h, w), a view of the blocks' tokens."""
        x, hw_shape = self.patch_embed(x)
        for i, block in enumerate(self.blocks):
            x = block(x, hw_shape)
            if i == 0:
                x = self.pos_conv(x, hw_shape)
        return tokens_to_map(x, hw_shape)


@MODELS.register_module()
class ScalableViT(BaseBackbone):
    """ScalableViT backbone.

    A four-stage hierarchical transformer whose stages alternate Interactive
    Window-based Self-Attention (IWSA) and Scalable Self-Attention (SSA).

    Args:
        arch (str | dict): ``'s'``, ``'b'``, ``'l'`` (or ``'small'``,
            ``'base'``, ``'large'``), or a dict with keys ``embed_dims``,
            ``depths``, ``num_heads`` and ``channel_ratios`` (one value per
            stage). Defaults to ``'s'``.
        in_channels (int): Input image channels. Defaults to 3.
        spatial_ratios (Sequence[int]): SSA r_n per stage.
            Defaults to (8, 4, 2, 1).
        window_size (int): IWSA window side. Defaults to 7.
        mlp_ratio (float): MLP hidden ratio. Defaults to 4.
        qkv_bias (bool): Bias in q/k/v projections. Defaults to True.
        shared_kv (bool): SSA in the paper's original form (keys and values
            from one ``Linear(C', 2C')``, output projection from ``C'``), which
            gives the paper's parameter count for S. The released checkpoints
            use False. Defaults to False.
        drop_rate (float): Dropout after projections. Defaults to 0.
        attn_drop_rate (float): Dropout on attention weights. Defaults to 0.
        drop_path_rate (float): Stochastic depth, increased linearly over all
            blocks up to this value. Defaults to 0.1.
        out_indices (Sequence[int] | int): Stages whose outputs are returned,
            each normalised by its own LayerNorm, as (B, C_i, H_i, W_i).
            Defaults to (0, 1, 2, 3).
        frozen_stages (int): Stages to freeze (parameters fixed, eval mode),
            with their output norms; -1 freezes none. Defaults to -1.
        norm_eval (bool): Keep every BatchNorm in eval mode (frozen
            statistics) while training. With the default LayerNorms there is
            none: no effect, but the argument is the same for every
            backbone. Defaults to False.
        norm_cfg (dict): Norm layers.
            Defaults to ``dict(type='LN', eps=1e-6)``.
        act_cfg (dict): MLP activation. Defaults to ``dict(type='GELU')``.
        with_cp (bool): Gradient checkpointing of every block.
            Defaults to False.
        attn_impl (str): How the attentions are computed: ``'fast'`` (fused
            ``F.scaled_dot_product_attention``) or ``'reference'`` (explicit
            softmax as in the official code; same weights, same results, for
            benchmarks). Defaults to ``'fast'``.
        init_cfg (dict, optional): Initialization config. ``type='Pretrained'``
            loads a checkpoint of this backbone, of an mmpretrain classifier
            (with ``prefix='backbone.'``) or an official ScalableViT
            checkpoint (converted on the fly). Defaults to None.
    """
    arch_zoo = {
        **dict.fromkeys(
            ['s', 'small'], {
                'embed_dims': [64, 128, 256, 512],
                'depths': [2, 2, 20, 2],
                'num_heads': [2, 4, 8, 16],
                'channel_ratios': [1.25, 1.25, 1.25, 1],
            }),
        **dict.fromkeys(
            ['b', 'base'], {
                'embed_dims': [96, 192, 384, 768],
                'depths': [2, 2, 14, 6],
                'num_heads': [3, 6, 12, 24],
                'channel_ratios': [2, 1.25, 1.25, 1],
            }),
        **dict.fromkeys(
            ['l', 'large'], {
                'embed_dims': [128, 256, 512, 1024],
                'depths': [2, 6, 12, 4],
                'num_heads': [4, 8, 16, 32],
                'channel_ratios': [0.25, 0.5, 1, 1],
            }),
    }
    num_stages = 4
    # Stride of each stage's patch embedding and its kernel.
    patch_sizes = (4, 2, 2, 2)
    patch_kernel_sizes = (7, 3, 3, 3)
    official_converter = staticmethod(scalablevit_official_to_mmcls)
    is_official = staticmethod(is_official_scalablevit)
    # A classifier checkpoint has no output norms.
    optional_missing = ('norm0.', 'norm1.', 'norm2.', 'norm3.')

    def __init__(self,
                 arch: Union[str, dict] = 's',
                 in_channels: int = 3,
                 spatial_ratios: Sequence[int] = (8, 4, 2, 1),
                 window_size: int = 7,
                 mlp_ratio: float = 4.,
                 qkv_bias: bool = True,
                 shared_kv: bool = False,
                 drop_rate: float = 0.,
                 attn_drop_rate: float = 0.,
                 drop_path_rate: float = 0.1,
                 out_indices: Union[Sequence[int], int] = (0, 1, 2, 3),
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 norm_cfg: dict = dict(type='LN', eps=1e-6),
                 act_cfg: dict = dict(type='GELU'),
                 with_cp: bool = False,
                 attn_impl: str = 'fast',
                 init_cfg: Optional[dict] = None):
        super().__init__(
            frozen_stages=frozen_stages,
            norm_eval=norm_eval,
            with_cp=with_cp,
            init_cfg=init_cfg)
        self.arch_settings = parse_arch(
            arch, self.arch_zoo,
            ('embed_dims', 'depths', 'num_heads', 'channel_ratios'),
            self.num_stages, 'ScalableViT')
        self.embed_dims = list(self.arch_settings['embed_dims'])
        depths = self.arch_settings['depths']
        if len(spatial_ratios) != self.num_stages:
            raise ValueError(f'spatial_ratios needs {self.num_stages} '
                             f'values, got {list(spatial_ratios)}')
        self.in_channels = in_channels
        self.out_indices = parse_out_indices(out_indices, self.num_stages)

        self.stages = ModuleList()
        stage_in_channels = in_channels
        for i, drop_path_rates in enumerate(
                stage_drop_path_rates(drop_path_rate, depths)):
            self.stages.append(
                ScalableViTStage(
                    in_channels=stage_in_channels,
                    embed_dims=self.embed_dims[i],
                    depth=depths[i],
                    num_heads=self.arch_settings['num_heads'][i],
                    patch_size=self.patch_sizes[i],
                    patch_kernel_size=self.patch_kernel_sizes[i],
                    drop_path_rates=drop_path_rates,
                    norm_cfg=norm_cfg,
                    block_cfg=dict(
                        window_size=window_size,
                        spatial_ratio=spatial_ratios[i],
                        channel_ratio=self.arch_settings['channel_ratios'][i],
                        shared_kv=shared_kv,
                        mlp_ratio=mlp_ratio,
                        qkv_bias=qkv_bias,
                        drop_rate=drop_rate,
                        attn_drop_rate=attn_drop_rate,
                        act_cfg=act_cfg,
                        with_cp=with_cp,
                        attn_impl=attn_impl)))
            stage_in_channels = self.embed_dims[i]

        for i in self.out_indices:
            self.add_module(f'norm{i}',
                            build_norm_layer(norm_cfg, self.embed_dims[i])[1])
        self._freeze_stages()

    def _init_default_weights(self):
        # The official initialization; convs from a normal of variance
        # 2 / fan-out.

        def init_conv(m: nn.Conv2d) -> None:
            fan_out = (
                m.kernel_size[0] * m.kernel_size[1] * m.out_channels //
                m.groups)
            normal_init(m, mean=0, std=math.sqrt(2.0 / fan_out))

        init_transformer_weights(self, init_conv)

    def _frozen_modules(self, i):
        frozen = [self.stages[i]]
        if i in self.out_indices:
            frozen.append(getattr(self, f'norm{i}'))
        return frozen

    def forward(self, x: Tensor) -> Tuple[Tensor, ...]:
        """Forward.

        Args:
            x (Tensor): Images of shape (B, in_channels, H, W), any H, W of
                at least 32.

        Returns:
            tuple[Tensor]: For each of ``out_indices``, the stage output of
            shape (B, C_i, ceil(H / s_i), ceil(W / s_i)) (s_i = 4, 8, 16, 32,
            up to the patch embeddings' rounding).
        """
        check_image_input(x, self.in_channels, math.prod(self.patch_sizes),
                          type(self).__name__)
        return self._forward_stages(x, self.stages)

    def _normalize_output(self, i: int, x: Tensor) -> Tensor:
        # The output norms are LayerNorms of the tokens.
        tokens = getattr(self, f'norm{i}')(map_to_tokens(x))
        return tokens_to_map(tokens, x.shape[2:])
