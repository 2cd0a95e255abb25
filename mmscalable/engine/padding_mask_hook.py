# Copyright (c) mmscalable contributors. All rights reserved.
"""Tells a backbone which pixels of a padded batch are each image's.

mmdet's and mmseg's data preprocessors pad the images of a batch at the
bottom and right to a common size, and a detector hands the backbone only
the padded tensor. Attention over every token then lets an image attend to
padding, so its features depend on the other images of its batch. A backbone
whose ``forward`` takes ``valid_shapes`` (``mmscalable.RefinerViT``) can mask
the padding out when it knows each image's ``img_shape``: this hook passes
the data samples' shapes to it on every forward of the model::

    custom_hooks = [dict(type='mmscalable.PaddingMaskHook')]
"""
import inspect
from typing import List, Optional, Sequence, Tuple

from mmengine.hooks import Hook
from torch import Tensor, nn

from mmscalable.registry import HOOKS
from .hooks import unwrap_model


def _data_samples(args: tuple, kwargs: dict) -> Optional[Sequence]:
    """The data samples of a ``model(inputs, data_samples, mode)`` call."""
    if 'data_samples' in kwargs:
        return kwargs['data_samples']
    return args[1] if len(args) > 1 else None


def _image_shapes(samples: Optional[Sequence]) -> Optional[List[tuple]]:
    """Each sample's ``img_shape`` (height, width), or None if any lacks
    one."""
    if not samples:
        return None
    shapes = []
    for sample in samples:
        shape = getattr(sample, 'img_shape', None)
        if shape is None:
            return None
        shapes.append(tuple(int(side) for side in shape[:2]))
    return shapes


class BatchImageShapes:
    """Forward hooks that hand a model's data-sample shapes to its backbone.

    The model's pre-hook keeps the ``img_shape`` of the call's samples; the
    backbone's pre-hook passes them as ``valid_shapes`` when its input is
    that batch (one image per sample, each shape within the input), not,
    for example, a crop of a sliding-window inference. The shapes are
    forgotten when the model's forward ends, also by an error.

    Args:
        model (nn.Module): The model called as ``model(inputs, data_samples,
            mode)``.
        backbone (nn.Module): Its backbone, whose ``forward`` takes
            ``valid_shapes``.
    """

    def __init__(self, model: nn.Module, backbone: nn.Module) -> None:
        self.shapes: Optional[List[tuple]] = None
        self.handles = [
            model.register_forward_pre_hook(
                self._keep_shapes, with_kwargs=True),
            model.register_forward_hook(self._forget_shapes, always_call=True),
            backbone.register_forward_pre_hook(
                self._pass_shapes, with_kwargs=True),
        ]

    def remove(self) -> None:
        """Take the hooks off the modules."""
        for handle in self.handles:
            handle.remove()
        self.handles = []

    def _keep_shapes(self, module, args: tuple, kwargs: dict) -> None:
        self.shapes = _image_shapes(_data_samples(args, kwargs))

    def _forget_shapes(self, module, args, output) -> None:
        self.shapes = None

    def _pass_shapes(self, module, args: tuple,
                     kwargs: dict) -> Optional[Tuple[tuple, dict]]:
        if self.shapes is None or 'valid_shapes' in kwargs or not args:
            return None
        x: Tensor = args[0]
        if len(self.shapes) != x.shape[0] or any(
                height > x.shape[-2] or width > x.shape[-1]
                for height, width in self.shapes):
            return None
        return args, {**kwargs, 'valid_shapes': self.shapes}


def _takes_valid_shapes(backbone: nn.Module) -> bool:
    return 'valid_shapes' in inspect.signature(backbone.forward).parameters


@HOOKS.register_module()
class PaddingMaskHook(Hook):
    """Masks the batch padding out of the backbone's attention.

    At the start of a run it hooks the model (unwrapped from DDP and
    test-time augmentation), so that every forward passes its data samples'
    ``img_shape`` to the backbone as ``valid_shapes``: in training,
    validation and testing alike.

    Raises:
        TypeError: When the model has no ``backbone`` whose ``forward`` takes
            ``valid_shapes``.
    """

    priority = 'VERY_HIGH'

    def __init__(self) -> None:
        self.hooks: Optional[BatchImageShapes] = None

    def before_run(self, runner) -> None:
        model = unwrap_model(runner.model)
        backbone = getattr(model, 'backbone', None)
        if backbone is None or not _takes_valid_shapes(backbone):
            found = 'none' if backbone is None else type(backbone).__name__
            raise TypeError(
                'PaddingMaskHook needs a model with a backbone whose forward '
                'takes valid_shapes (such as mmscalable.RefinerViT); '
                f'{type(model).__name__} has {found}. Remove the hook from '
                'custom_hooks for this model.')
        self.hooks = BatchImageShapes(model, backbone)

    def after_run(self, runner) -> None:
        if self.hooks is not None:
            self.hooks.remove()
            self.hooks = None
