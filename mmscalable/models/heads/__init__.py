# Copyright (c) mmscalable contributors. All rights reserved.
from .refiner_head import RefinerClsHead
from .scalablevit_head import ScalableViTClsHead

__all__ = ['RefinerClsHead', 'ScalableViTClsHead']
