# Copyright (c) mmscalable contributors. All rights reserved.
"""Inputs of the compiled ops' tests, shared by the tests of the CPU and
CUDA kernels (``tests/test_ops/test_*``) and of the CUDA kernels run through
the CPU emulation (``test_emulated_kernels.py``)."""
import torch

# (kernel_sizes, group_channels) of group_mix_dwconv: the proxies of
# GroupMixFormer, CRPE's head groups, one group, a 1x1 group and a kernel
# size without a fixed-size path in the CPU kernel (whose channel tile also
# spans two groups in the CUDA kernels).
GROUP_MIX_GROUPS = [
    ((3, 5, 7), (4, 4, 4)),
    ((3, 5, 7), (2, 3, 3)),
    ((7, ), (5, )),
    ((1, 3), (3, 2)),
    ((9, 3), (2, 17)),
]


def refined_attention_inputs(B, H, N, d, expand, dtype=torch.float64,
                             device='cpu', seed=0):
    """Maps, values and the seven folded parameters of the refined
    attention (``refined_attention_reference``'s arguments), the parameters
    in the kernels' accumulation type."""
    gen = torch.Generator().manual_seed(seed)
    E = H * expand

    def rand(*shape, scale=1.):
        return (torch.randn(*shape, generator=gen, dtype=torch.float64) *
                scale).to(device)

    # Maps as an attention block passes them on: softmax rows plus a
    # scaled previous map, here up to a few units so that relu6 clips on
    # both sides.
    attn = rand(B, H, N, N, scale=3.)
    value = rand(B, H, N, d)
    params = [
        rand(E, H, scale=.7),
        rand(E, scale=.7),
        rand(E, 3, 3, scale=.7),
        rand(E, scale=.7),
        rand(H, E, scale=.4),
        rand(H, scale=.2),
        rand(H)
    ]
    param_dtype = torch.float64 if dtype == torch.float64 else torch.float32
    return (attn.to(dtype), value.to(dtype),
            *[p.to(param_dtype) for p in params])


def group_mix_case(size, groups, streams=3, dtype=torch.float64,
                   device='cpu', token_layout=True, seed=0, place=None):
    """A strided (B, H, W, S, C) input of ``group_mix_dwconv`` cut from
    tokens (or from an NCHW map), packed weights and a bias.

    Args:
        place (Callable, optional): Applied to the tokens (or map) before
            the view is cut, e.g. to put them inside a guarded buffer.

    Returns:
        tuple: input, weight, bias, kernel sizes, channels per group.
    """
    gen = torch.Generator().manual_seed(seed)
    B, H, W = size
    kernel_sizes, group_channels = groups
    C = sum(group_channels)
    place = place or (lambda tensor: tensor)
    if token_layout:
        # Channels 2 .. 2 + C of each stream of (B, H * W, S * (C + 3)).
        tokens = torch.randn(B, H * W, streams * (C + 3), generator=gen,
                             dtype=torch.float64)
        tokens = place(tokens.to(device, dtype))
        x = tokens.view(B, H, W, streams, C + 3)[..., 2:2 + C]
    else:
        maps = torch.randn(B, streams * C, H, W, generator=gen,
                           dtype=torch.float64)
        maps = place(maps.to(device, dtype))
        x = maps.view(B, streams, C, H, W).permute(0, 3, 4, 1, 2)
    weight = torch.randn(
        sum(c * k * k for c, k in zip(group_channels, kernel_sizes)),
        generator=gen, dtype=torch.float64).to(device, dtype)
    bias = torch.randn(C, generator=gen, dtype=torch.float64).to(device, dtype)
    return x, weight, bias, list(kernel_sizes), list(group_channels)
