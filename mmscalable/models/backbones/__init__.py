# Copyright (c) mmscalable contributors. All rights reserved.
from .groupmixformer import GroupMixFormer
from .scalablevit import ScalableViT

__all__ = ['GroupMixFormer', 'ScalableViT']
