# Copyright (c) mmscalable contributors. All rights reserved.
from .scalablevit import ScalableViT

__all__ = ['ScalableViT']
