# Copyright (c) mmscalable contributors. All rights reserved.
"""Skip marks of the compiled ops' tests.

A missing extension skips its tests, unless ``MMSCALABLE_REQUIRE_EXT=1``
(CI that builds the ops sets it) turns that into a failure. CUDA tests skip
without a CUDA device and a CUDA build of the extension, tests of the ops'
fake implementations on a torch without them (< 2.4).
"""
import os

import pytest
import torch

from mmscalable import torch_compat
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
# torch.library.register_fake and opcheck came with torch 2.4; before, the
# ops have no fake implementation (torch.compile and torch.export trace the
# references, FakeTensorMode cannot run the ops).
requires_fake_kernels = pytest.mark.skipif(
    not torch_compat.HAS_REGISTER_FAKE,
    reason=f'torch {torch.__version__} has no torch.library.register_fake '
    'or opcheck (torch >= 2.4): the ops have no fake implementation')
