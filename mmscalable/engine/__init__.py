# Copyright (c) mmscalable contributors. All rights reserved.
"""Training-side parts: hooks, the AMP optimizer wrapper and the CPU DDP
wrapper (mmengine registries of the ``mmscalable`` scope)."""
from .dist import (CPUDistributedDataParallel, CPUSyncBatchNorm,
                   convert_cpu_sync_batchnorm)
from .hooks import CheckpointMatchHook, RandomStateHook
from .optim import AmpOptimWrapper
from .padding_mask_hook import PaddingMaskHook

__all__ = [
    'AmpOptimWrapper', 'CheckpointMatchHook', 'CPUDistributedDataParallel',
    'CPUSyncBatchNorm', 'PaddingMaskHook', 'RandomStateHook',
    'convert_cpu_sync_batchnorm'
]
