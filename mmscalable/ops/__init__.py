# Copyright (c) mmscalable contributors. All rights reserved.
"""Ops of mmscalable, with compiled kernels in ``mmscalable._ext``.

Importing this package needs only PyTorch (not mmengine or mmcv), so that the
ops can be built and checked on their own.
"""
from .ext_loader import ext_info, has_compiled_kernel, load_ext
from .group_mix import (group_mix_dwconv, group_mix_dwconv_reference,
                        pack_depthwise_weights, unpack_depthwise_weights)
from .refined_attention import (fused_kernel_applies, fused_refined_attention,
                                refined_attention,
                                refined_attention_reference)
from .window_partition import (window_partition, window_partition_reference,
                               window_reverse, window_reverse_reference)

__all__ = [
    'ext_info', 'fused_kernel_applies', 'fused_refined_attention',
    'group_mix_dwconv',
    'group_mix_dwconv_reference', 'has_compiled_kernel', 'load_ext',
    'pack_depthwise_weights', 'refined_attention',
    'refined_attention_reference', 'unpack_depthwise_weights',
    'window_partition', 'window_partition_reference', 'window_reverse',
    'window_reverse_reference'
]
