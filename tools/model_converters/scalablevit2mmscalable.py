# Copyright (c) mmscalable contributors. All rights reserved.
"""Convert an official ScalableViT checkpoint to an mmpretrain classifier's.

The same as ``official2mmscalable.py scalablevit SRC DST``; see its ``--help``.
"""
import os.path as osp
import sys

sys.path.append(osp.dirname(osp.dirname(osp.abspath(__file__))))  # tools/
import env_check  # noqa: E402,F401  (first: names a missing package)
sys.path.insert(0, osp.dirname(osp.abspath(__file__)))

from official2mmscalable import main as _main  # noqa: E402

from mmscalable.compat import quiet_third_party_deprecations  # noqa: E402
from mmscalable.models.families import FAMILIES  # noqa: E402

convert = FAMILIES['scalablevit'].convert


def main(argv=None):
    _main(argv, family='scalablevit', prog=osp.basename(__file__))


if __name__ == '__main__':
    quiet_third_party_deprecations()
    main()
