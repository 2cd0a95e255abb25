# Copyright (c) mmscalable contributors. All rights reserved.
"""Refiner-ViT (Zhou et al., "Refiner: Refining Self-attention for Vision
Transformers", 2021).

The layout follows the released classification code, so that its checkpoints
load after a key conversion: a three-conv stem and a stride-8 projection
(patch 16), a class token and a learned position embedding, and blocks that
alternate attention and refiner blocks (``RefinedAttention``) with the
released block wrapper (inputs halved before each norm, branches doubled,
MLP ratio 3 with a per-channel scale initialised to 1e-5).
"""
from typing import Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import ConvModule, build_norm_layer
from mmengine.logging import MMLogger, print_log
from mmengine.model import ModuleList, Sequential
from mmengine.model.weight_init import trunc_normal_init
from torch import Tensor

from mmscalable.registry import MODELS
from ..checkpoint import (is_official_refiner, load_pretrained_backbone,
                          refiner_official_to_mmcls)
from ..layers import RefinedAttention, ffn_eval_branch, tokens_to_map
from .base import (BaseBackbone, check_image_input, checkpoint_if,
                   contiguous_map, init_transformer_weights, parse_arch,
                   parse_out_indices, stage_drop_path_rates)
from .pre_norm_block import PreNormBlock


def resize_pos_embed(pos_embed: Tensor, src_grid: Sequence[int],
                     dst_grid: Sequence[int]) -> Tensor:
    """Resize a position embedding (1, 1 + h * w, C) with the class token's
    first from an (h, w) grid of patches to ``dst_grid``.

    Bicubic without aligned corners, as the released fine-tuning code
    (``utils/utils.py``, called by ``main.py``) and mmseg's ViT resize it;
    the class token's embedding is kept.
    """
    cls_pos, patch_pos = pos_embed[:, :1], pos_embed[:, 1:]
    patch_pos = patch_pos.transpose(1, 2).reshape(1, -1, *src_grid)
    patch_pos = F.interpolate(
        patch_pos.float(),
        size=tuple(dst_grid),
        mode='bicubic',
        align_corners=False).to(pos_embed.dtype)
    return torch.cat([cls_pos, patch_pos.flatten(2).transpose(1, 2)], dim=1)


class RefinerBlock(PreNormBlock):
    """The released block wrapper around a ``RefinedAttention`` and an MLP.

    ``x + 2 * attn(norm1(x / 2))`` then ``x + 2 * mlp(norm2(x / 2))``.

    Args:
        embed_dims (int): Number of channels.
        num_heads (int): Attention heads.
        refine (bool): A refiner block instead of an attention block.
        mlp_ratio (float): Hidden channels of the MLP. Defaults to 3.
        expand_ratio (int): Head expansion of the map refinement.
            Defaults to 3.
        qkv_bias (bool): Bias of the q/k/v projections. Defaults to True.
        drop_rate (float): Dropout after projections. Defaults to 0.
        attn_drop_rate (float): Dropout on attention maps. Defaults to 0.
        drop_path_rate (float): Stochastic depth. Defaults to 0.
        layer_scale_init_value (float): Initial per-channel scale of the MLP
            output. Defaults to 1e-5.
        norm_cfg (dict): Token norms. Defaults to
            ``dict(type='LN', eps=1e-6)``.
        map_norm_cfg (dict): Norms of the map refinement. Defaults to
            ``dict(type='BN')``.
        act_cfg (dict): MLP activation. Defaults to ``dict(type='GELU')``.
        attn_impl (str): ``RefinedAttention``'s ``impl``, ``'fast'`` or
            ``'reference'``. Defaults to ``'fast'``.
        attn_memory_budget (int): ``RefinedAttention``'s ``memory_budget``
            (bytes). Defaults to 256 MiB.
        with_cp (bool): Recompute the block in backward. Defaults to False.
        init_cfg (dict, optional): Initialization config. Defaults to None.
    """
    # The released wrapper scales the branch inputs by this and divides the
    # branch outputs by it.
    residual_ratio = 0.5

    def __init__(self,
                 embed_dims: int,
                 num_heads: int,
                 refine: bool,
                 mlp_ratio: float = 3.,
                 expand_ratio: int = 3,
                 qkv_bias: bool = True,
                 drop_rate: float = 0.,
                 attn_drop_rate: float = 0.,
                 drop_path_rate: float = 0.,
                 layer_scale_init_value: float = 1e-5,
                 norm_cfg: dict = dict(type='LN', eps=1e-6),
                 map_norm_cfg: dict = dict(type='BN'),
                 act_cfg: dict = dict(type='GELU'),
                 attn_impl: str = 'fast',
                 attn_memory_budget: int = 256 * 2**20,
                 with_cp: bool = False,
                 init_cfg: Optional[dict] = None):
        super().__init__(with_cp=with_cp, init_cfg=init_cfg)
        attn = RefinedAttention(
            embed_dims,
            num_heads,
            refine=refine,
            expand_ratio=expand_ratio,
            qkv_bias=qkv_bias,
            attn_drop_rate=attn_drop_rate,
            proj_drop_rate=drop_rate,
            norm_cfg=map_norm_cfg,
            impl=attn_impl,
            memory_budget=attn_memory_budget)
        self._init_pre_norm_layers(
            embed_dims,
            attn,
            mlp_ratio=mlp_ratio,
            drop_rate=drop_rate,
            drop_path_rate=drop_path_rate,
            norm_cfg=norm_cfg,
            act_cfg=act_cfg,
            add_identity=False,
            layer_scale_init_value=layer_scale_init_value)

    def forward(self, x: Tensor,
                prev_attn: Optional[Tensor]) -> Tuple[Tensor, Tensor]:
        """Tokens (B, N, C) and the received map to tokens and the map."""
        ratio = self.residual_ratio

        def _inner_forward(x, prev_attn):
            out, attn = self.attn(self.norm1(x * ratio), prev_attn)
            if not self.training:
                # Dropout and drop path are identities in eval mode.
                x = x + out / ratio
                branch = ffn_eval_branch(self.ffn, self.norm2(x * ratio))
                x = x + branch / ratio
                return x, attn
            x = x + self.drop_path(out) / ratio
            x = x + self.ffn(self.norm2(x * ratio)) / ratio
            return x, attn

        return checkpoint_if(self.with_cp, _inner_forward, x, prev_attn)


@MODELS.register_module()
class RefinerViT(BaseBackbone):
    """Refiner-ViT backbone.

    Args:
        arch (str | dict): ``'s'``, ``'m'``, ``'l'`` (or ``'small'``,
            ``'medium'``, ``'large'``), or a dict with keys ``embed_dims``,
            ``depth`` and ``num_heads``. Defaults to ``'s'``.
        img_size (int | tuple[int, int]): Size the position embedding is
            made for; other input sizes interpolate it, and a position
            embedding of another (square) grid of patches is resized to it
            on loading, whatever loads the weights (``init_cfg``,
            ``load_from``, ``load_checkpoint``, ``load_state_dict``).
            Defaults to 224.
        in_channels (int): Input image channels. Defaults to 3.
        mlp_ratio (float): MLP hidden ratio. Defaults to 3.
        expand_ratio (int): Head expansion of the map refinement.
            Defaults to 3.
        qkv_bias (bool): Bias of the q/k/v projections. Defaults to True.
        drop_rate (float): Dropout after the position embedding and the
            projections. Defaults to 0.
        attn_drop_rate (float): Dropout on attention maps. Defaults to 0.
        drop_path_rate (float): Stochastic depth, increased linearly over
            the blocks up to this value. Defaults to 0.
        out_indices (Sequence[int] | int): Blocks whose outputs are returned;
            negative indices count from the end. Dense models take four
            evenly spaced blocks. Defaults to -1.
        out_type (str): ``'raw'``: tokens (B, 1 + h * w, C), class token
            first (for the classification head); ``'featmap'``: maps
            (B, C, h, w) of the patch tokens (for necks). Defaults to
            ``'raw'``.
        final_norm (bool): LayerNorm (official ``norm``) on the output of the
            last block. Defaults to True.
        norm_eval (bool): Keep every BatchNorm (stem and attention maps) in
            eval mode while training: frozen statistics, the usual choice when
            fine-tuning at detection and segmentation sizes. Defaults to False.
        stem_norm_cfg (dict): Norm of the conv stem. Defaults to
            ``dict(type='BN')``.
        map_norm_cfg (dict): Norms of the map refinement. Defaults to
            ``dict(type='BN')``.
        norm_cfg (dict): Token norms. Defaults to
            ``dict(type='LN', eps=1e-6)``.
        attn_impl (str): How the attention maps are computed:
            ``'reference'`` (every N x N map at once, as the official code)
            or ``'fast'`` (the same while the maps are within
            ``attn_memory_budget``, beyond it exact chunks of query rows, for
            detection and segmentation sizes). Defaults to ``'fast'``.
        attn_memory_budget (int): Bytes of attention-map temporaries each
            block may hold at once with ``attn_impl='fast'``: the maps are
            chunked when one image's expanded maps of a block
            (``expand_ratio * num_heads * N * N`` elements, N tokens) exceed
            it, in chunks of query rows whose temporaries fit in it. Lower
            it to chunk at smaller sizes. Defaults to ``256 * 2**20``
            (256 MiB).
        with_cp (bool): Gradient checkpointing of every block.
            Defaults to False.
        init_cfg (dict, optional): Initialization config. Defaults to None.
    """
    arch_zoo = {
        **dict.fromkeys(['s', 'small'], {
                            'embed_dims': 384,
                            'depth': 16,
                            'num_heads': 12
                        }),
        **dict.fromkeys(['m', 'medium'], {
                            'embed_dims': 420,
                            'depth': 32,
                            'num_heads': 12
                        }),
        **dict.fromkeys(['l', 'large'], {
                            'embed_dims': 512,
                            'depth': 32,
                            'num_heads': 16
                        }),
    }
    # The stem: a stride-2 conv, then a stride-8 projection.
    patch_size = 16
    stem_channels = (32, 64, 128)
    out_types = ('raw', 'featmap')
    # A checkpoint without the final norm.
    optional_missing = ('norm.', )

    def __init__(self,
                 arch: Union[str, dict] = 's',
                 img_size: Union[int, Sequence[int]] = 224,
                 in_channels: int = 3,
                 mlp_ratio: float = 3.,
                 expand_ratio: int = 3,
                 qkv_bias: bool = True,
                 drop_rate: float = 0.,
                 attn_drop_rate: float = 0.,
                 drop_path_rate: float = 0.,
                 out_indices: Union[Sequence[int], int] = -1,
                 out_type: str = 'raw',
                 final_norm: bool = True,
                 norm_eval: bool = False,
                 stem_norm_cfg: dict = dict(type='BN'),
                 map_norm_cfg: dict = dict(type='BN'),
                 norm_cfg: dict = dict(type='LN', eps=1e-6),
                 attn_impl: str = 'fast',
                 attn_memory_budget: int = 256 * 2**20,
                 with_cp: bool = False,
                 init_cfg: Optional[dict] = None):
        super().__init__(
            norm_eval=norm_eval, with_cp=with_cp, init_cfg=init_cfg)
        settings = parse_arch(arch, self.arch_zoo,
                              ('embed_dims', 'depth', 'num_heads'), None,
                              'RefinerViT')
        self.embed_dims = settings['embed_dims']
        self.depth = settings['depth']
        self.num_heads = settings['num_heads']
        self.in_channels = in_channels
        self.out_indices = parse_out_indices(out_indices, self.depth)
        if out_type not in self.out_types:
            raise ValueError(f'out_type must be one of {self.out_types}, '
                             f'got {out_type!r}')
        self.out_type = out_type
        if isinstance(img_size, int):
            img_size = (img_size, img_size)
        self.pos_grid = (img_size[0] // self.patch_size,
                         img_size[1] // self.patch_size)

        self.stem = self._build_stem(stem_norm_cfg)
        self.patch_projection = nn.Conv2d(self.stem_channels[-1],
                                          self.embed_dims,
                                          self.patch_size // 2,
                                          self.patch_size // 2)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, self.embed_dims))
        self.pos_embed = nn.Parameter(
            torch.zeros(1, 1 + self.pos_grid[0] * self.pos_grid[1],
                        self.embed_dims))
        self.drop_after_pos = nn.Dropout(drop_rate)
        self.blocks = self._build_blocks(
            drop_path_rate,
            mlp_ratio=mlp_ratio,
            expand_ratio=expand_ratio,
            qkv_bias=qkv_bias,
            drop_rate=drop_rate,
            attn_drop_rate=attn_drop_rate,
            norm_cfg=norm_cfg,
            map_norm_cfg=map_norm_cfg,
            attn_impl=attn_impl,
            attn_memory_budget=attn_memory_budget,
            with_cp=with_cp)
        self.final_norm = final_norm
        if final_norm:
            self.norm = build_norm_layer(norm_cfg, self.embed_dims)[1]
        self._register_load_state_dict_pre_hook(self._fit_loaded_pos_embed)

    def _build_stem(self, norm_cfg: dict) -> Sequential:
        """A stride-2 7x7 conv, then 3x3 convs, to ``stem_channels``."""
        stem, channels = [], self.in_channels
        for i, out_channels in enumerate(self.stem_channels):
            stem.append(
                ConvModule(
                    channels,
                    out_channels,
                    7 if i == 0 else 3,
                    stride=2 if i == 0 else 1,
                    padding=3 if i == 0 else 1,
                    bias=False,
                    norm_cfg=norm_cfg,
                    act_cfg=dict(type='ReLU')))
            channels = out_channels
        return Sequential(*stem)

    def _build_blocks(self, drop_path_rate: float,
                      **block_cfg) -> ModuleList:
        """Attention blocks at even indices, refiner blocks at odd ones."""
        drop_path_rates = stage_drop_path_rates(drop_path_rate,
                                                [self.depth])[0]
        return ModuleList([
            RefinerBlock(
                self.embed_dims,
                self.num_heads,
                refine=i % 2 == 1,
                drop_path_rate=drop_path_rates[i],
                **block_cfg) for i in range(self.depth)
        ])

    def _init_default_weights(self):
        # The official initialization: timm's for Linear, LayerNorm and the
        # embeddings, PyTorch's defaults for convs (ConvModule
        # re-initialises its convs; undo that) and BatchNorm.
        trunc_normal_init(self.pos_embed, std=.02)
        trunc_normal_init(self.cls_token, std=.02)
        init_transformer_weights(self, nn.Conv2d.reset_parameters)

    def _of_other_grid(self, pos_embed: Optional[Tensor]) -> bool:
        """Whether ``pos_embed`` is a position embedding of these channels
        for another number of patches."""
        return (isinstance(pos_embed, Tensor) and pos_embed.dim() == 3
                and pos_embed.shape[1] != self.pos_embed.shape[1]
                and pos_embed.shape[2] == self.pos_embed.shape[2])

    def _fit_pos_embed(self, pos_embed: Tensor, source: str) -> Tensor:
        """Resize a loaded position embedding of another square grid of
        patches to the model's grid (``source`` names it in messages).

        Raises:
            ValueError: If the grid is not square (its sides are unknown).
        """
        num_patches = pos_embed.shape[1] - 1
        side = int(round(num_patches**0.5))
        if side * side != num_patches:
            raise ValueError(
                f'{source}: pos_embed of shape {tuple(pos_embed.shape)} is '
                'not for a square grid of patches; cannot resize it to the '
                f'{self.pos_grid[0]}x{self.pos_grid[1]} grid of '
                f'{type(self).__name__}')
        print_log(
            f'Resized pos_embed of {source} from {side}x{side} to '
            f'{self.pos_grid[0]}x{self.pos_grid[1]} patches',
            logger=MMLogger.get_current_instance())
        return resize_pos_embed(pos_embed, (side, side), self.pos_grid)

    def _fit_loaded_pos_embed(self, state_dict: dict, prefix: str, *args):
        # A load_state_dict pre-hook, so that checkpoints of other sizes
        # load on every path, not only through init_cfg.
        key = prefix + 'pos_embed'
        if self._of_other_grid(state_dict.get(key)):
            state_dict[key] = self._fit_pos_embed(
                state_dict[key], f'the loaded state dict ({key})')

    def load_pretrained(self,
                        checkpoint: str,
                        prefix: Optional[str] = None,
                        ema: bool = True) -> None:
        """Load official checkpoints (converted on the fly; their EMA
        weights, ``state_dict_ema``, unless ``ema=False``) or mmscalable
        ones (a converted classifier: ``prefix='backbone.'``); a position
        embedding made for another grid of patches (L trained at 448, a dense
        model's ``img_size``) is resized to the model's grid."""
        prefix = prefix or ''

        def needs_conversion(state_dict):
            # The loader refuses tensors of other shapes before loading:
            # resize pos_embed here.
            return (is_official_refiner(state_dict) or self._of_other_grid(
                state_dict.get(prefix + 'pos_embed')))

        def to_classifier_keys(state_dict):
            if is_official_refiner(state_dict):
                state_dict = refiner_official_to_mmcls(state_dict)
            else:  # mmscalable weights for another grid
                state_dict = {
                    'backbone.' + k[len(prefix):]: v
                    for k, v in state_dict.items() if k.startswith(prefix)
                }
            pos_embed = state_dict.get('backbone.pos_embed')
            if self._of_other_grid(pos_embed):
                state_dict['backbone.pos_embed'] = self._fit_pos_embed(
                    pos_embed, checkpoint)
            return state_dict

        load_pretrained_backbone(
            self,
            checkpoint,
            prefix=prefix or None,
            official_converter=to_classifier_keys,
            is_official=needs_conversion,
            optional_missing=self.optional_missing,
            ema=ema,
            logger=MMLogger.get_current_instance())

    def resized_pos_embed(self, grid: Sequence[int]) -> Tensor:
        """The position embedding for a (h, w) token grid.

        Patch embeddings are interpolated bicubically (see
        :func:`resize_pos_embed`); the class token's is kept.
        """
        if tuple(grid) == self.pos_grid:
            return self.pos_embed
        return resize_pos_embed(self.pos_embed, self.pos_grid, grid)

    def forward(
        self,
        x: Tensor,
        valid_shapes: Optional[Sequence[Sequence[int]]] = None
    ) -> Tuple[Tensor, ...]:
        """Forward.

        Args:
            x (Tensor): Images (B, in_channels, H, W) of at least 16x16.
            valid_shapes (Sequence[Sequence[int]], optional): For each image,
                the (height, width) of its pixels at the top left of ``x``;
                the rest is padding added to batch it with larger images
                (mmdet's and mmseg's data preprocessors pad at the bottom and
                right). Padded tokens are then masked out of every image's
                attention: no image attends to them or to another image's
                padding, and the maps are refined over the image's own token
                grid, so an image's features are those it has alone.
                Features of the padding are zero. ``PaddingMaskHook`` passes
                the data samples' ``img_shape`` here. Defaults to None (every
                pixel of ``x`` is the image's).

        Returns:
            tuple[Tensor]: For each of ``out_indices``, the block output
            (through the final norm for the last block): tokens
            (B, 1 + h * w, C) with the class token first, or maps
            (B, C, h, w) of the patch tokens with ``out_type='featmap'``;
            h = ceil(H / 16), w likewise.
        """
        crops = (None if valid_shapes is None else self._valid_crops(
            x, valid_shapes))
        if crops is None:
            return self.forward_with_attn_maps(x, 0)[0]
        grid = self._grid(x.shape[2:])
        # The refinement convolves the N x N maps in token order, and an
        # image's raster order depends on its width: a key mask inside the
        # padded grid would still give each image other neighbours than it
        # has alone. Each image therefore runs on its own grid, which is its
        # attention with the padded keys (and queries) masked out, without
        # the cost of computing them.
        per_image = [
            self.forward_with_attn_maps(crop, 0)[0] for crop in crops
        ]
        return tuple(
            torch.cat([
                self._pad_output(outs[i], self._grid(crop.shape[2:]), grid)
                for crop, outs in zip(crops, per_image)
            ]) for i in range(len(self.out_indices)))

    def _grid(self, size: Sequence[int]) -> Tuple[int, int]:
        """The (h, w) patches of an image of ``size`` (corner padded)."""
        return (-(-size[0] // self.patch_size), -(-size[1] // self.patch_size))

    def _valid_crops(
            self, x: Tensor,
            valid_shapes: Sequence[Sequence[int]]) -> Optional[list]:
        """Each image's valid pixels, or None when none has padding."""
        if len(valid_shapes) != x.shape[0]:
            raise ValueError(
                f'valid_shapes has {len(valid_shapes)} entries for a batch '
                f'of {x.shape[0]} images')
        shapes = [tuple(int(side) for side in shape[:2])
                  for shape in valid_shapes]
        for height, width in shapes:
            if not (0 < height <= x.shape[2] and 0 < width <= x.shape[3]):
                raise ValueError(
                    f'A valid shape of {height}x{width} does not fit in the '
                    f'input of {x.shape[2]}x{x.shape[3]}')
        if all(shape == tuple(x.shape[2:]) for shape in shapes):
            return None
        return [
            x[i:i + 1, :, :height, :width]
            for i, (height, width) in enumerate(shapes)
        ]

    def _pad_output(self, out: Tensor, image_grid: Tuple[int, int],
                    grid: Tuple[int, int]) -> Tensor:
        """One image's output on its (h, w) grid of patches, zero-padded to
        the batch's."""
        (h, w), padding = image_grid, (0, grid[1] - image_grid[1], 0,
                                       grid[0] - image_grid[0])
        if self.out_type == 'featmap':
            return F.pad(out, padding)
        # Tokens: the class token, then the patch tokens in raster order.
        B, _, C = out.shape
        patches = out[:, 1:].transpose(1, 2).reshape(B, C, h, w)
        patches = F.pad(patches, padding).flatten(2).transpose(1, 2)
        return torch.cat([out[:, :1], patches], dim=1)

    def forward_with_attn_maps(
            self, x: Tensor,
            num_maps: int) -> Tuple[Tuple[Tensor, ...], Tuple[Tensor, ...]]:
        """:meth:`forward`'s outputs and the attention maps (B, heads, N, N)
        that the first ``num_maps`` blocks pass on (the released training's
        ``atten_list``, for its cosine-similarity regulariser)."""
        check_image_input(x, self.in_channels, self.patch_size,
                          type(self).__name__)
        # Corner padding (mmseg's PatchEmbed(padding='corner')): zeros on
        # the bottom and right up to a multiple of the patch size, so that
        # the stride-16 stem sees every pixel (it floors otherwise).
        pad_h = -x.shape[2] % self.patch_size
        pad_w = -x.shape[3] % self.patch_size
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h))
        x = self.patch_projection(self.stem(x))
        B, _, h, w = x.shape
        x = x.flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(B, -1, -1), x], dim=1)
        x = self.drop_after_pos(x + self.resized_pos_embed((h, w)))
        attn, outs, maps = None, [], []
        for i, block in enumerate(self.blocks):
            x, attn = block(x, attn)
            if i < num_maps:
                maps.append(attn)
            if i in self.out_indices:
                outs.append(self._block_output(i, x, (h, w)))
        return tuple(outs), tuple(maps)

    def _normalize_output(self, i: int, x: Tensor) -> Tensor:
        """Block ``i``'s tokens, through the final norm for the last
        block."""
        if i == self.depth - 1 and self.final_norm:
            return self.norm(x)
        return x

    def _block_output(self, i: int, x: Tensor,
                      grid: Tuple[int, int]) -> Tensor:
        """Block ``i``'s output: its (B, 1 + h * w, C) tokens through
        their norm, or with ``out_type='featmap'`` the map of the patch
        tokens of the (h, w) ``grid``."""
        x = self._normalize_output(i, x)
        if self.out_type == 'featmap':
            return contiguous_map(tokens_to_map(x[:, 1:], grid))
        return x
