# Copyright (c) mmscalable contributors. All rights reserved.
"""Registries of mmscalable.

``MODELS`` is a child of mmengine's root model registry under the scope
``mmscalable``. mmdet, mmseg and mmpretrain registries are children of the same
root, so a config of any of them can name ``type='mmscalable.ScalableViT'``:
the registry lookup climbs to the root and descends into this scope. None of
the task libraries is imported here, so an mmdet user does not need mmseg and
the reverse.
"""
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import Registry

MODELS = Registry(
    'model',
    parent=MMENGINE_MODELS,
    scope='mmscalable',
    locations=['mmscalable.models'])
