"""A test oracle: Refiner-ViT written the way the released code computes it.

Module names follow the official checkpoints (``patch_embed.conv1``,
``blocks.i.attn.DLA.conv_exp``, ``blocks.i.attn.adapt_bn``,
``blocks.i.mlp.scale_channel``, ``aux_head``...), the math follows the
released model (zhoudaquan/Refiner_ViT, ``Refiner_ViT_{S,M,L}``): even blocks
compute softmax maps from q and k each scaled by ``sqrt(d ** -0.5)`` and add
``d ** -0.5`` times the map passed on by the previous refiner block (the
previous attention block's map); odd blocks have a value projection only
(still named ``qkv``) and attend with ``d ** -0.5 * adapt_bn(A + DLA(A))``,
passing the received map on unchanged. It shares no code with mmscalable, so
that a converted checkpoint giving equal logits checks the key mapping and the
model together.

The released model needs the input size it was built for; ``forward`` here
also takes other sizes by resizing the position embedding of the patches
bicubically without aligned corners (class token kept), as the released
fine-tuning code resizes a checkpoint's (``utils/utils.py``).
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class ConvStem(nn.Module):
    """Three conv-BN-ReLU layers (the first with stride 2), a stride-8
    projection."""

    def __init__(self, in_channels, dim):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 32, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(32)
        self.conv2 = nn.Conv2d(32, 64, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(64)
        self.conv3 = nn.Conv2d(64, 128, 3, 1, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(128)
        self.proj = nn.Conv2d(128, dim, 8, 8)

    def forward(self, x):
        for i in (1, 2, 3):
            conv, bn = getattr(self, f'conv{i}'), getattr(self, f'bn{i}')
            x = F.relu(bn(conv(x)))
        return self.proj(x)


class DLA(nn.Module):
    """``A + R(A)``: 1x1 head expansion, 3x3 depthwise, 1x1 reduction."""

    def __init__(self, heads, expand_ratio):
        super().__init__()
        hidden = heads * expand_ratio
        self.conv_exp = nn.Conv2d(heads, hidden, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(hidden)
        self.depth_sep_conv = nn.Conv2d(
            hidden, hidden, 3, padding=1, groups=hidden, bias=False)
        self.bn2 = nn.BatchNorm2d(hidden)
        self.conv_pro = nn.Conv2d(hidden, heads, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(heads)

    def forward(self, a):
        r = F.relu6(self.bn1(self.conv_exp(a)))
        r = F.relu6(self.bn2(self.depth_sep_conv(r)))
        return a + self.bn3(self.conv_pro(r))


class Attention(nn.Module):

    def __init__(self, dim, heads, refiner, expand_ratio):
        super().__init__()
        self.heads = heads
        self.refiner = refiner
        self.scale = (dim // heads)**-0.5
        if refiner:
            self.DLA = DLA(heads, expand_ratio)
            self.adapt_bn = nn.BatchNorm2d(heads)
            self.qkv = nn.Linear(dim, dim)  # values only
        else:
            self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x, received):
        B, N, C = x.shape
        d = C // self.heads
        if self.refiner:
            v = self.qkv(x).view(B, N, self.heads, d).transpose(1, 2)
            weights = self.adapt_bn(self.DLA(received)) * self.scale
            passed_on = received
        else:
            q, k, v = self.qkv(x).view(B, N, 3, self.heads,
                                       d).permute(2, 0, 3, 1, 4)
            root = math.sqrt(self.scale)
            weights = ((root * q) @ (root * k).transpose(-2, -1)).softmax(-1)
            if received is not None:
                weights = weights + received * self.scale
            passed_on = weights
        out = (weights @ v).transpose(1, 2).reshape(B, N, C)
        return self.proj(out), passed_on


class Mlp(nn.Module):

    def __init__(self, dim, hidden):
        super().__init__()
        self.scale_channel = nn.Parameter(torch.full((dim, ), 1e-5))
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.scale_channel * self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):

    def __init__(self, dim, heads, refiner, mlp_ratio, expand_ratio):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads, refiner, expand_ratio)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x, received):
        out, passed_on = self.attn(self.norm1(x / 2), received)
        x = x + 2 * out
        return x + 2 * self.mlp(self.norm2(x / 2)), passed_on


class OfficialRefinerViT(nn.Module):
    """Refiner-ViT with the released layout; ``forward`` gives the released
    evaluation output ``head(cls) + 0.5 * max_n aux_head(token_n)``."""

    def __init__(self,
                 embed_dims,
                 depth,
                 num_heads,
                 img_size=224,
                 num_classes=1000,
                 mlp_ratio=3,
                 expand_ratio=3,
                 in_channels=3):
        super().__init__()
        self.grid = img_size // 16
        self.cls_token = nn.Parameter(torch.randn(1, 1, embed_dims) * .02)
        self.pos_embed = nn.Parameter(
            torch.randn(1, 1 + self.grid**2, embed_dims) * .02)
        self.patch_embed = ConvStem(in_channels, embed_dims)
        self.blocks = nn.ModuleList([
            Block(embed_dims, num_heads, i % 2 == 1, mlp_ratio, expand_ratio)
            for i in range(depth)
        ])
        self.norm = nn.LayerNorm(embed_dims, eps=1e-6)
        self.head = nn.Linear(embed_dims, num_classes)
        self.aux_head = nn.Linear(embed_dims, num_classes)

    def position_embedding(self, h, w):
        if (h, w) == (self.grid, self.grid):
            return self.pos_embed
        cls_pos, patch_pos = self.pos_embed[:, :1], self.pos_embed[:, 1:]
        patch_pos = patch_pos.transpose(1, 2).reshape(1, -1, self.grid,
                                                      self.grid)
        patch_pos = F.interpolate(
            patch_pos, (h, w), mode='bicubic', align_corners=False)
        return torch.cat([cls_pos, patch_pos.flatten(2).transpose(1, 2)], 1)

    def forward_features(self, x):
        """Tokens (B, 1 + h * w, C) after the final norm, class token
        first."""
        x = self.patch_embed(x)
        B, C, h, w = x.shape
        x = torch.cat(
            [self.cls_token.expand(B, -1, -1),
             x.flatten(2).transpose(1, 2)], 1)
        x = x + self.position_embedding(h, w)
        received = None
        for block in self.blocks:
            x, received = block(x, received)
        return self.norm(x)

    def forward(self, x):
        x = self.forward_features(x)
        aux = self.aux_head(x[:, 1:]).max(dim=1)[0]
        return self.head(x[:, 0]) + 0.5 * aux
