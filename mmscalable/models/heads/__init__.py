# Copyright (c) mmscalable contributors. All rights reserved.
from .scalablevit_head import ScalableViTClsHead

__all__ = ['ScalableViTClsHead']
