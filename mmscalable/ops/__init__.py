# Copyright (c) mmscalable contributors. All rights reserved.
"""Ops of mmscalable, with compiled kernels in ``mmscalable._ext``.

Importing this package needs only PyTorch (not mmengine or mmcv), so that the
ops can be built and checked on their own.
"""
import warnings

from .ext_loader import ext_info, load_ext
from .window_partition import (window_partition, window_partition_reference,
                               window_reverse, window_reverse_reference)

# `python -m mmscalable.ops.ext_loader` imports this package, and so
# ext_loader, before running that module as __main__; runpy then warns that
# the module is already imported. Running it twice is harmless (it only
# prints), so that one warning is silenced.
warnings.filterwarnings(
    'ignore',
    message=r"'mmscalable\.ops\.ext_loader' found in sys\.modules",
    category=RuntimeWarning)

__all__ = [
    'ext_info', 'load_ext', 'window_partition', 'window_partition_reference',
    'window_reverse', 'window_reverse_reference'
]
