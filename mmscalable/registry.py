# Copyright (c) mmscalable contributors. All rights reserved.
"""Registries of mmscalable.

``MODELS`` is a child of mmengine's root model registry under the scope
``mmscalable``. mmdet, mmseg and mmpretrain registries are children of the same
root, so a config of any of them can name ``type='mmscalable.ScalableViT'``:
the registry lookup climbs to the root and descends into this scope. None of
the task libraries is imported here, so an mmdet user does not need mmseg and
the reverse.

``HOOKS``, ``OPTIM_WRAPPERS`` and ``MODEL_WRAPPERS`` hold the training-side
parts of ``mmscalable.engine`` (``type='mmscalable.RandomStateHook'`` and
so on), built the same way.
"""
from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.registry import MODEL_WRAPPERS as MMENGINE_MODEL_WRAPPERS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import OPTIM_WRAPPERS as MMENGINE_OPTIM_WRAPPERS
from mmengine.registry import Registry


def _scope_registry(name: str, parent: Registry, location: str) -> Registry:
    return Registry(
        name, parent=parent, scope='mmscalable', locations=[location])


MODELS = _scope_registry('model', MMENGINE_MODELS, 'mmscalable.models')
HOOKS = _scope_registry('hook', MMENGINE_HOOKS, 'mmscalable.engine')
OPTIM_WRAPPERS = _scope_registry('optim_wrapper', MMENGINE_OPTIM_WRAPPERS,
                                 'mmscalable.engine')
MODEL_WRAPPERS = _scope_registry('model_wrapper', MMENGINE_MODEL_WRAPPERS,
                                 'mmscalable.engine')
