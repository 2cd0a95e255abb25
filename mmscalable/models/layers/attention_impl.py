# Copyright (c) mmscalable contributors. All rights reserved.
"""The ``impl`` of every attention: ``'fast'`` or ``'reference'``.

Every attention of mmscalable computes one function in two ways, chosen by
``impl`` (backbones: ``attn_impl``): ``'fast'`` (the default) and
``'reference'``, which computes what the official code computes the way it
computes it. Both use the same parameters, so a checkpoint runs either way;
the benchmark times one against the other and the tests check that they
agree.

What ``'fast'`` computes for a call is decided in one place,
:func:`mmscalable.models.layers.dispatch.select_backend`; this module also
holds the attention kernels the backends share.
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
           backend: str,
           key_mask: Optional[Tensor] = None) -> Tensor:
    """``softmax(scale * Q K^T) V``: with SDPA where ``backend`` is
    ``'sdpa'`` (:func:`~mmscalable.models.layers.dispatch.select_backend`),
    else explicitly.

    ``dropout`` is the module of the attention weights; its rate and
    training flag give SDPA's ``dropout_p``. ``key_mask`` is True where a
    key may be attended.
    """
    if backend != 'sdpa':
        return explicit_attention(query, key, value, scale, dropout, key_mask)
    return F.scaled_dot_product_attention(
        query,
        key,
        value,
        attn_mask=key_mask,
        dropout_p=dropout.p if dropout.training else 0.,
        scale=scale)
