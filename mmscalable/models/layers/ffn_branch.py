# Copyright (c) mmscalable contributors. All rights reserved.
"""The residual branch of mmcv's two-layer :class:`FFN` in eval mode."""
from typing import Optional

import torch
import torch.nn as nn
from mmcv.cnn.bricks.transformer import FFN
from torch import Tensor


def ffn_eval_branch(ffn: FFN,
                    x: Tensor,
                    identity: Optional[Tensor] = None) -> Tensor:
    """What ``ffn(x, identity=...)`` computes in eval mode:
    ``identity + gamma2(fc2(act(fc1(x))))``, or the branch alone without
    ``identity``.

    Dropout and drop path are identities in eval mode. Calling the layers
    directly skips ``FFN.forward``'s deprecated-argument wrapper (a signature
    inspection per call) and its no-op modules, a few percent of a block at
    batch 1. Without autograd the GELU and the residual sum are computed in
    place on the fresh outputs of ``fc1`` and the branch: on the CPU a new
    tensor of that size costs its page faults again on every call. The
    layers are looked up on every call, so that modules swapped in later
    (quantized, adapted) are the ones called.

    Args:
        ffn (FFN): An mmcv FFN with ``num_fcs=2``.
        x (Tensor): Its input, (..., embed_dims).
        identity (Tensor, optional): Added to the branch's output.

    Returns:
        Tensor: The branch's output, plus ``identity`` if given.
    """
    (fc1, act, _), fc2, _ = ffn.layers
    # A trace must not depend on the grad mode (torch.jit.trace checks its
    # graph again under no_grad).
    inplace = not (torch.is_grad_enabled() or torch.jit.is_tracing())
    hidden = fc1(x)
    if inplace and type(act) is nn.GELU:
        hidden = torch.ops.aten.gelu_(hidden, approximate=act.approximate)
    else:
        hidden = act(hidden)
    out = ffn.gamma2(fc2(hidden))
    if identity is None:
        return out
    if inplace and out.dtype == identity.dtype and out.shape == identity.shape:
        return out.add_(identity)
    # Under autocast the branch may be of a lower precision: the sum is
    # promoted, as FFN's is.
    return identity + out
