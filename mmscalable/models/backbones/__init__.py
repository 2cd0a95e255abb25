# Copyright (c) mmscalable contributors. All rights reserved.
from .groupmixformer import GroupMixFormer
from .refiner_vit import RefinerViT
from .scalablevit import ScalableViT

__all__ = ['GroupMixFormer', 'RefinerViT', 'ScalableViT']
