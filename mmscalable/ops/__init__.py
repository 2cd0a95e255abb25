# Copyright (c) mmscalable contributors. All rights reserved.
"""Ops of mmscalable, with compiled kernels in ``mmscalable._ext``.

Importing this package needs only PyTorch (not mmengine or mmcv), so that the
ops can be built and checked on their own.
"""
from .ext_loader import ext_info, load_ext
from .refined_attention import (has_fused_kernel, refined_attention,
                                refined_attention_reference)
from .window_partition import (window_partition, window_partition_reference,
                               window_reverse, window_reverse_reference)

__all__ = [
    'ext_info', 'has_fused_kernel', 'load_ext', 'refined_attention',
    'refined_attention_reference', 'window_partition',
    'window_partition_reference', 'window_reverse', 'window_reverse_reference'
]
