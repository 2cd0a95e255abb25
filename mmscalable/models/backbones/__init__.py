# Copyright (c) mmscalable contributors. All rights reserved.
from .base import BaseBackbone
from .groupmixformer import GroupMixFormer
from .refiner_vit import RefinerViT
from .scalablevit import ScalableViT

__all__ = ['BaseBackbone', 'GroupMixFormer', 'RefinerViT', 'ScalableViT']
