# Copyright (c) mmscalable contributors. All rights reserved.
"""Models of mmscalable, registered in ``mmscalable.registry.MODELS``.

Backbones and attention modules need only mmengine and mmcv. Task-specific
parts (the mmpretrain classifier and heads) are registered when their library
is installed, so that an mmdet user does not need mmpretrain.
"""
import importlib.util

from .backbones import *  # noqa: F401,F403
from .layers import *  # noqa: F401,F403
from .necks import *  # noqa: F401,F403

if importlib.util.find_spec('mmpretrain') is not None:
    from .classifiers import *  # noqa: F401,F403
    from .heads import *  # noqa: F401,F403
