"""A test oracle: ScalableViT written the way the official code computes it.

Module names follow the official checkpoints (``patch_embeds``,
``pos_block``, ``stages.i.j.attn.lim_func``...), the math follows the released
code step by step (explicit softmax(QK^T)V, window split by reshapes, no
padding: sides must be multiples of 32 * 7 / 4 as in the original). It shares
no code with mmscalable, so that a converted checkpoint giving equal logits
checks the key mapping and the model together.
"""
import torch.nn as nn
import torch.nn.functional as F


class OfficialIWSA(nn.Module):

    def __init__(self, dim, heads, ws=7):
        super().__init__()
        self.heads, self.ws = heads, ws
        self.scale = (dim // heads)**-0.5
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)
        self.lim_func = nn.Conv2d(dim, dim, 3, 1, 1, groups=dim)

    def forward(self, x, H, W):
        B, N, C = x.shape
        ws, h = self.ws, self.heads
        gh, gw = H // ws, W // ws
        q, k, v = self.qkv(x).reshape(B, N, 3, C).permute(2, 0, 1, 3)

        def to_windows(t):
            t = t.reshape(B, gh, ws, gw, ws, C).transpose(2, 3)
            return t.reshape(B, gh * gw, ws * ws, h, C // h).permute(
                0, 1, 3, 2, 4)

        q, k, v = to_windows(q), to_windows(k), to_windows(v)
        v_img = v.permute(0, 1, 3, 2, 4).reshape(B, gh, gw, ws, ws, C)
        v_img = v_img.transpose(2, 3).reshape(B, H, W, C).permute(0, 3, 1, 2)
        lim = self.lim_func(v_img).flatten(2).transpose(1, 2)
        attn = (q @ k.transpose(-2, -1) * self.scale).softmax(-1)
        out = (attn @ v).transpose(2, 3).reshape(B, gh, gw, ws, ws, C)
        out = out.transpose(2, 3).reshape(B, N, C)
        return self.proj(out + lim)


class OfficialSSA(nn.Module):

    def __init__(self, dim, heads, sr, cr, shared_kv=False):
        super().__init__()
        self.heads, self.sr = heads, sr
        self.scale = (dim // heads * cr)**-0.5
        self.c_new = int(dim * cr)
        self.shared_kv = shared_kv
        if sr > 1:
            self.q = nn.Linear(dim, self.c_new)
            self.reduction = nn.Sequential(
                nn.Conv2d(dim, dim, sr, sr, groups=dim),
                nn.Conv2d(dim, self.c_new, 1))
            self.norm_act = nn.Sequential(nn.LayerNorm(self.c_new), nn.GELU())
            if shared_kv:
                self.kv = nn.Linear(self.c_new, 2 * self.c_new)
            else:
                self.k = nn.Linear(self.c_new, self.c_new)
                self.v = nn.Linear(self.c_new, dim)
        else:
            self.q = nn.Linear(dim, dim)
            self.kv = nn.Linear(dim, dim * 2)
        out_dims = self.c_new if (sr > 1 and shared_kv) else dim
        self.proj = nn.Linear(out_dims, dim)

    def forward(self, x, H, W):
        B, N, C = x.shape
        h = self.heads
        if self.sr > 1:
            ctx = x.permute(0, 2, 1).reshape(B, C, H, W)
            ctx = self.reduction(ctx).reshape(B, self.c_new, -1).permute(
                0, 2, 1)
            ctx = self.norm_act(ctx)
            q = self.q(x).reshape(B, N, h, -1).permute(0, 2, 1, 3)
            if self.shared_kv:
                k, v = self.kv(ctx).reshape(B, -1, 2, h, self.c_new //
                                             h).permute(2, 0, 3, 1, 4)
            else:
                k = self.k(ctx).reshape(B, -1, h, self.c_new // h).permute(
                    0, 2, 1, 3)
                v = self.v(ctx).reshape(B, -1, h, C // h).permute(0, 2, 1, 3)
        else:
            q = self.q(x).reshape(B, N, h, C // h).permute(0, 2, 1, 3)
            k, v = self.kv(x).reshape(B, -1, 2, h, C // h).permute(
                2, 0, 3, 1, 4)
        attn = (q @ k.transpose(-2, -1) * self.scale).softmax(-1)
        out = (attn @ v).transpose(1, 2).reshape(B, N, -1)
        return self.proj(out)


class Mlp(nn.Module):

    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


class OfficialBlock(nn.Module):

    def __init__(self, dim, heads, sr, cr, ws, shared_kv):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = (
            OfficialSSA(dim, heads, sr, cr, shared_kv)
            if ws == 1 else OfficialIWSA(dim, heads, ws))
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, dim * 4)

    def forward(self, x, H, W):
        x = x + self.attn(self.norm1(x), H, W)
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):

    def __init__(self, cin, cout, patch, overlap):
        super().__init__()
        self.patch = patch
        self.proj = nn.Conv2d(cin, cout, patch + overlap, patch, overlap)
        self.norm = nn.LayerNorm(cout, eps=1e-6)

    def forward(self, x):
        H, W = x.shape[2] // self.patch, x.shape[3] // self.patch
        return self.norm(self.proj(x).flatten(2).transpose(1, 2)), H, W


class PosCNN(nn.Module):

    def __init__(self, dim):
        super().__init__()
        self.proj = nn.Sequential(nn.Conv2d(dim, dim, 3, 1, 1, groups=dim))

    def forward(self, x, H, W):
        B, N, C = x.shape
        feat = x.transpose(1, 2).reshape(B, C, H, W)
        return (self.proj(feat) + feat).flatten(2).transpose(1, 2)


class OfficialScalableViT(nn.Module):
    """Official-layout ScalableViT with the 4096-wide classification head."""

    def __init__(self,
                 embed_dims,
                 depths,
                 num_heads,
                 c_ratios,
                 sr_ratios=(8, 4, 2, 1),
                 num_classes=1000,
                 shared_kv=False):
        super().__init__()
        self.patch_embeds = nn.ModuleList()
        self.pos_block = nn.ModuleList()
        self.stages = nn.ModuleList()
        for k, dim in enumerate(embed_dims):
            self.patch_embeds.append(
                PatchEmbed(3, dim, 4, 3) if k ==
                0 else PatchEmbed(embed_dims[k - 1], dim, 2, 1))
            self.pos_block.append(PosCNN(dim))
            self.stages.append(
                nn.ModuleList([
                    OfficialBlock(dim, num_heads[k], sr_ratios[k],
                                  c_ratios[k], 1 if i % 2 else 7, shared_kv)
                    for i in range(depths[k])
                ]))
        self.norm = nn.LayerNorm(embed_dims[-1], eps=1e-6)
        self.head = nn.Sequential(
            nn.Linear(embed_dims[-1], 4096), nn.LayerNorm(4096, eps=1e-6),
            nn.GELU(), nn.Linear(4096, num_classes))

    def forward_features(self, x):
        """Normalised last-stage tokens (B, N, C4), before pooling."""
        B = x.shape[0]
        for i, stage in enumerate(self.stages):
            x, H, W = self.patch_embeds[i](x)
            for j, block in enumerate(stage):
                x = block(x, H, W)
                if j == 0:
                    x = self.pos_block[i](x, H, W)
            if i < len(self.stages) - 1:
                x = x.reshape(B, H, W, -1).permute(0, 3, 1, 2)
        return self.norm(x)

    def forward(self, x):
        return self.head(self.forward_features(x).mean(1))
