# Copyright (c) mmscalable contributors. All rights reserved.
"""Skip marks of the compiled ops' tests.

A missing extension skips its tests, unless ``MMSCALABLE_REQUIRE_EXT=1``
(CI that builds the ops sets it) turns that into a failure. CUDA tests skip
without a CUDA device and a CUDA build of the extension.
"""
import os

import pytest
import torch

from mmscalable.ops import ext_info

REQUIRE_EXT = os.environ.get('MMSCALABLE_REQUIRE_EXT', '0') == '1'
EXT_AVAILABLE = ext_info()['available']
requires_ext = pytest.mark.skipif(
    not EXT_AVAILABLE and not REQUIRE_EXT,
    reason='mmscalable._ext is not built (' + str(ext_info()['error']) +
    '); set MMSCALABLE_REQUIRE_EXT=1 to fail instead')
requires_cuda = pytest.mark.skipif(
    not torch.cuda.is_available(), reason='needs a CUDA device')
requires_cuda_ext = pytest.mark.skipif(
    not (torch.cuda.is_available() and ext_info()['cuda']),
    reason='needs a CUDA device and mmscalable._ext built with CUDA '
    '(FORCE_CUDA=1)')
