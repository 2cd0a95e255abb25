# Copyright (c) mmscalable contributors. All rights reserved.
"""The residual branch of mmcv's two-layer :class:`FFN` in eval mode."""
from mmcv.cnn.bricks.transformer import FFN
from torch import Tensor


def ffn_eval_branch(ffn: FFN, x: Tensor) -> Tensor:
    """What ``ffn(x, identity=...)`` adds to its identity in eval mode:
    ``gamma2(fc2(act(fc1(x))))``.

    Dropout and drop path are identities in eval mode. Calling the layers
    directly skips ``FFN.forward``'s deprecated-argument wrapper (a signature
    inspection per call) and its no-op modules, a few percent of a block at
    batch 1. The layers are looked up on every call, so that modules swapped
    in later (quantized, adapted) are the ones called.

    Args:
        ffn (FFN): An mmcv FFN with ``num_fcs=2``.
        x (Tensor): Its input, (..., embed_dims).

    Returns:
        Tensor: The branch's output, without the identity.
    """
    (fc1, act, _), fc2, _ = ffn.layers
    return ffn.gamma2(fc2(act(fc1(x))))
