# Copyright (c) mmscalable contributors. All rights reserved.
"""Training-side parts: hooks and the optimizer wrapper (mmengine registries
of the ``mmscalable`` scope)."""
from .hooks import CheckpointMatchHook, RandomStateHook
from .optim import AmpOptimWrapper

__all__ = ['AmpOptimWrapper', 'CheckpointMatchHook', 'RandomStateHook']
