"""A test oracle: GroupMixFormer written the way the official code computes it.

Module names follow the official checkpoints (``conv_stem.proj1``,
``patch_embed_layers.i.proj.conv1``, ``groupmixformer_backbone.i.gma_stage.j
.att.aggregator.agg1.pointwise_conv``...), the math follows the released code
step by step (q, k, v stacked on the batch before the aggregators, per-head
factorised attention, token-count assertions: sides must be multiples of 32).
It shares no code with mmscalable, so that a converted checkpoint giving equal
logits checks the key mapping and the model together.
"""
import torch
import torch.nn as nn


class SepConv(nn.Module):

    def __init__(self, cin, cout, k, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(
            cin, cin, k, stride, k // 2, groups=cin, bias=False)
        self.pointwise_conv = nn.Conv2d(cin, cout, 1, bias=False)

    def forward(self, x):
        return self.pointwise_conv(self.conv1(x))


class LocalAgg(nn.Module):

    def __init__(self, seg):
        super().__init__()
        self.conv = SepConv(3 * seg, seg, 3)
        self.norm = nn.LayerNorm(seg)

    def forward(self, x):
        x = self.conv(x).flatten(2).transpose(1, 2)
        return nn.functional.hardswish(self.norm(x))


class Aggregator(nn.Module):

    def __init__(self, dim):
        super().__init__()
        self.seg = dim // 5
        self.norm0 = nn.BatchNorm2d(self.seg)
        for i, k in ((1, 3), (2, 5), (3, 7)):
            setattr(self, f'agg{i}', SepConv(self.seg, self.seg, k))
            setattr(self, f'norm{i}', nn.BatchNorm2d(self.seg))
        self.agg0 = LocalAgg(self.seg)


class ConvRelPos(nn.Module):

    def __init__(self, ch):
        super().__init__()
        self.splits = [2, 3, 3]
        self.conv_list = nn.ModuleList([
            nn.Conv2d(n * ch, n * ch, k, 1, k // 2, groups=n * ch)
            for k, n in zip((3, 5, 7), self.splits)
        ])


class Att(nn.Module):

    def __init__(self, dim, heads=8):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.aggregator = Aggregator(dim)
        self.ch = dim // 5 * 4 // heads
        self.crpe = ConvRelPos(self.ch)

    def forward(self, x, H, W):
        B, N, C = x.shape
        assert N == H * W
        hs = nn.functional.hardswish
        agg = self.aggregator
        seg = agg.seg
        qkv = self.qkv(x).reshape(B, N, 3, C).permute(2, 0, 1, 3)
        qkv = qkv.reshape(3 * B, N, C).transpose(1, 2).reshape(
            3 * B, C, H, W)
        parts = [qkv[:, i * seg:(i + 1) * seg] for i in range(5)]
        mixed = [hs(agg.norm0(parts[0]))]
        for i in (1, 2, 3):
            conv, norm = getattr(agg, f'agg{i}'), getattr(agg, f'norm{i}')
            mixed.append(hs(norm(conv(parts[i]))))
        mixed = torch.cat(mixed, 1)  # (3B, 4seg, H, W)
        qm, km, vm = mixed[:B], mixed[B:2 * B], mixed[2 * B:]
        local = torch.cat(
            [parts[4][:B], parts[4][B:2 * B], parts[4][2 * B:]], 1)
        local = agg.agg0(local)  # (B, N, seg)

        # The position term per head group, on v as a map.
        convs = []
        start = 0
        for conv, n in zip(self.crpe.conv_list, self.crpe.splits):
            convs.append(conv(vm[:, start:start + n * self.ch]))
            start += n * self.ch
        conv_v = torch.cat(convs, 1)
        heads = []
        for h in range(self.heads):
            sl = slice(h * self.ch, (h + 1) * self.ch)
            q = qm[:, sl].flatten(2).transpose(1, 2)  # (B, N, ch)
            k = km[:, sl].flatten(2).transpose(1, 2)
            v = vm[:, sl].flatten(2).transpose(1, 2)
            kv = torch.einsum('bnk,bnv->bkv', k.softmax(dim=1), v)
            out = torch.einsum('bnk,bkv->bnv', q, kv) * (C // self.heads)**-0.5
            heads.append(out + q * conv_v[:, sl].flatten(2).transpose(1, 2))
        out = torch.cat(heads + [local], -1)
        return self.proj(out)


class Mlp(nn.Module):

    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(nn.functional.gelu(self.fc1(x)))


class Cpe(nn.Module):

    def __init__(self, dim):
        super().__init__()
        self.proj = nn.Conv2d(dim, dim, 3, 1, 1, groups=dim)


class Block(nn.Module):

    def __init__(self, dim, mlp_ratio):
        super().__init__()
        self.cpe = Cpe(dim)
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.att = Att(dim)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x, H, W):
        B, N, C = x.shape
        feat = x.transpose(1, 2).reshape(B, C, H, W)
        x = (self.cpe.proj(feat) + feat).flatten(2).transpose(1, 2)
        x = x + self.att(self.norm1(x), H, W)
        return x + self.mlp(self.norm2(x))


class Stage(nn.Module):

    def __init__(self, dim, depth, mlp_ratio):
        super().__init__()
        self.gma_stage = nn.ModuleList(
            [Block(dim, mlp_ratio) for _ in range(depth)])


class PatchEmbed(nn.Module):

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.proj = SepConv(cin, cout, 3, stride)
        self.norm = nn.BatchNorm2d(cout)


class Stem(nn.Module):

    def __init__(self, dim):
        super().__init__()
        self.proj1 = nn.Conv2d(3, dim // 2, 3, 2, 1)
        self.norm1 = nn.BatchNorm2d(dim // 2)
        self.proj2 = nn.Conv2d(dim // 2, dim, 3, 2, 1)
        self.norm2 = nn.BatchNorm2d(dim)


class OfficialGroupMixFormer(nn.Module):

    def __init__(self, dims, depths, mlp_ratios, num_classes=1000):
        super().__init__()
        self.conv_stem = Stem(dims[0])
        self.patch_embed_layers = nn.ModuleList([
            PatchEmbed(dims[max(i - 1, 0)], dims[i], 1 if i == 0 else 2)
            for i in range(4)
        ])
        self.groupmixformer_backbone = nn.ModuleList(
            [Stage(dims[i], depths[i], mlp_ratios[i]) for i in range(4)])
        self.norm4 = nn.BatchNorm2d(dims[3])
        self.head = nn.Linear(dims[3], num_classes)

    def forward_features(self, x):
        hs = nn.functional.hardswish
        s = self.conv_stem
        x = hs(s.norm2(s.proj2(hs(s.norm1(s.proj1(x))))))
        outs = []
        for embed, stage in zip(self.patch_embed_layers,
                                self.groupmixformer_backbone):
            x = hs(embed.norm(embed.proj(x)))
            B, C, H, W = x.shape
            x = x.flatten(2).transpose(1, 2)
            for block in stage.gma_stage:
                x = block(x, H, W)
            x = x.transpose(1, 2).reshape(B, C, H, W)
            outs.append(x)
        return outs

    def forward(self, x):
        x = self.norm4(self.forward_features(x)[-1])
        return self.head(x.mean(dim=(2, 3)))
