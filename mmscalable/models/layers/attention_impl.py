# Copyright (c) mmscalable contributors. All rights reserved.
"""The ``impl`` of every attention: ``'fast'`` or ``'reference'``.

Every attention of mmscalable computes one function in two ways, chosen by
``impl`` (backbones: ``attn_impl``): ``'fast'`` (the default) and
``'reference'``, which computes what the official code computes the way it
computes it. Both use the same parameters, so a checkpoint runs either way;
the benchmark times one against the other and the tests check that they
agree.

What ``'fast'`` does on a given device follows one rule,
:func:`uses_one_launch`; this module also holds the attention kernels the
two paths share.
"""
from typing import Optional

import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

ATTENTION_IMPLS = ('fast', 'reference')

# Names that earlier versions of Refiner-ViT's attention accepted, and what
# to use instead.
RENAMED_IMPLS = {
    'full':
    "'full' is now 'reference'",
    'auto':
    "'auto' is now 'fast'",
    'chunked':
    "'chunked' is now part of 'fast', which chunks the attention maps when "
    'they exceed its memory budget: use a smaller memory_budget '
    '(backbones: attn_memory_budget) to chunk smaller maps',
}


def check_impl(impl: str) -> str:
    """Return ``impl`` if it names an attention implementation, else raise.

    A name of an earlier version is refused with the name to use instead.
    """
    if impl in RENAMED_IMPLS:
        raise ValueError(f'impl must be one of {ATTENTION_IMPLS}, got '
                         f'{impl!r}: {RENAMED_IMPLS[impl]}')
    if impl not in ATTENTION_IMPLS:
        raise ValueError(
            f'impl must be one of {ATTENTION_IMPLS}, got {impl!r}')
    return impl


def prefers_one_launch(x: Tensor) -> bool:
    """Whether fused formulations pay for ``x``'s device.

    On a GPU these backbones are bound by kernel launches and memory
    traffic (the reference reaches 2-8% of an H100's bf16 peak), so the fast
    paths attend with ``F.scaled_dot_product_attention``, which never
    writes the weights to memory. On the CPU, measured on 2 cores
    (docs/benchmark/), the CPU SDPA kernels on these shapes (thousands of
    queries, tens to hundreds of keys) are slower than the plain
    computation, so the fast path attends as the reference does there.
    """
    return x.device.type != 'cpu'


def uses_one_launch(impl: str, x: Tensor) -> bool:
    """Whether ``impl`` runs its fused formulations (SDPA) for ``x``: ``'fast'`` on a device that :func:`prefers_one_launch`."""
    return impl == 'fast' and prefers_one_launch(x)


def explicit_attention(query: Tensor,
                       key: Tensor,
                       value: Tensor,
                       scale: float,
                       dropout: nn.Module,
                       key_mask: Optional[Tensor] = None) -> Tensor:
    """``softmax(scale * Q K^T) V`` with the weights materialised.

    The official computation, kept as the reference of the fused path.
    ``key_mask`` is True where a key may be attended.
    """
    attn = (query @ key.transpose(-2, -1)) * scale
    if key_mask is not None:
        attn = attn.masked_fill(~key_mask, float('-inf'))
    return dropout(attn.softmax(dim=-1)) @ value


def attend(query: Tensor,
           key: Tensor,
           value: Tensor,
           scale: float,
           dropout: nn.Dropout,
           impl: str,
           key_mask: Optional[Tensor] = None) -> Tensor:
    """``softmax(scale * Q K^T) V``: with SDPA where ``impl``
    :func:`uses_one_launch` on the query's device, else explicitly.

    ``dropout`` is the module of the attention weights; its rate and
    training flag give SDPA's ``dropout_p``. ``key_mask`` is True where a
    key may be attended.
    """
    if not uses_one_launch(impl, query):
        return explicit_attention(query, key, value, scale, dropout, key_mask)
    return F.scaled_dot_product_attention(
        query,
        key,
        value,
        attn_mask=key_mask,
        dropout_p=dropout.p if dropout.training else 0.,
        scale=scale)
