# Copyright (c) mmscalable contributors. All rights reserved.
"""Whole detectors and segmentors for the benchmark, built from configs.

A config path given to the benchmark as a model name builds that model
(mmdet or mmseg, by the config's ``default_scope``) with the backbone's
``attn_impl`` set per implementation and no pretrained weights, wrapped so
that the benchmark calls it as ``model(images)``:

* in eval mode, the network forward without post-processing (``mode=
  'tensor'``): backbone, neck and heads, the RPN's proposals and the RoI
  heads on them for two-stage detectors;
* in train mode, the losses on synthetic targets (``mode='loss'``), summed
  as the runner does.

The synthetic targets are drawn once per input size from a fixed seed: a
few boxes with masks per image for detectors, a random label map for
segmentors.
"""
from typing import Callable, Dict, List, Tuple

import numpy as np
import torch
import torch.nn as nn
from torch import Tensor

TASK_SCOPES = ('mmdet', 'mmseg')


def _flatten(outputs) -> List[Tensor]:
    if isinstance(outputs, Tensor):
        return [outputs]
    if isinstance(outputs, dict):
        outputs = list(outputs.values())
    if isinstance(outputs, (list, tuple)):
        return [t for item in outputs for t in _flatten(item)]
    return []


def _num_classes(model: nn.Module) -> int:
    for path in ('roi_head.bbox_head', 'bbox_head', 'decode_head'):
        module = model
        for name in path.split('.'):
            module = getattr(module, name, None)
        if module is not None and hasattr(module, 'num_classes'):
            return module.num_classes
    raise ValueError(f'cannot tell the number of classes of '
                     f'{type(model).__name__}')


def detection_samples(batch: int, height: int, width: int, num_classes: int,
                      device: torch.device, with_masks: bool) -> list:
    """``DetDataSample``s with three boxes (and masks) per image."""
    from mmdet.structures import DetDataSample
    from mmdet.structures.mask import BitmapMasks
    from mmengine.structures import InstanceData
    rng = np.random.default_rng(0)
    samples = []
    for i in range(batch):
        sample = DetDataSample(
            metainfo=dict(
                img_id=i,
                img_shape=(height, width),
                ori_shape=(height, width),
                pad_shape=(height, width),
                batch_input_shape=(height, width),
                scale_factor=(1., 1.)))
        corners = rng.uniform(0, 0.6, (3, 2)) * (width, height)
        sizes = rng.uniform(0.1, 0.4, (3, 2)) * (width, height)
        boxes = np.concatenate([corners, corners + sizes], axis=1)
        gt = InstanceData()
        gt.bboxes = torch.as_tensor(boxes, dtype=torch.float32, device=device)
        gt.labels = torch.as_tensor(
            rng.integers(0, num_classes, 3), device=device)
        if with_masks:
            masks = np.zeros((3, height, width), dtype=np.uint8)
            for m, (x1, y1, x2, y2) in zip(masks, boxes.astype(int)):
                m[y1:y2, x1:x2] = 1
            gt.masks = BitmapMasks(masks, height, width)
        sample.gt_instances = gt
        samples.append(sample)
    return samples


def segmentation_samples(batch: int, height: int, width: int,
                         num_classes: int, device: torch.device) -> list:
    """``SegDataSample``s with random label maps."""
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    gen = torch.Generator().manual_seed(0)
    samples = []
    for _ in range(batch):
        sample = SegDataSample(
            metainfo=dict(
                img_shape=(height, width),
                ori_shape=(height, width),
                pad_shape=(height, width)))
        labels = torch.randint(
            0, num_classes, (1, height, width), generator=gen)
        sample.gt_sem_seg = PixelData(data=labels.to(device))
        samples.append(sample)
    return samples


class TaskModel(nn.Module):
    """A detector or segmentor called as ``model(images)``.

    Args:
        model (nn.Module): An mmdet detector or mmseg segmentor.
        scope (str): ``'mmdet'`` or ``'mmseg'``.
    """

    def __init__(self, model: nn.Module, scope: str):
        super().__init__()
        if scope not in TASK_SCOPES:
            raise ValueError(f'scope must be one of {TASK_SCOPES}, got '
                             f'{scope!r}')
        self.model = model
        self.scope = scope
        self.num_classes = _num_classes(model)
        self._samples: Dict[Tuple, list] = {}

    def samples(self, images: Tensor) -> list:
        B, _, H, W = images.shape
        key = (B, H, W, images.device)
        if key not in self._samples:
            if self.scope == 'mmdet':
                self._samples[key] = detection_samples(
                    B, H, W, self.num_classes, images.device,
                    with_masks=getattr(self.model, 'with_mask', False))
            else:
                self._samples[key] = segmentation_samples(
                    B, H, W, self.num_classes, images.device)
        return self._samples[key]

    def agreement_forward(self, images: Tensor) -> Tuple[Tensor, ...]:
        """Backbone and neck features, for the fast/reference check: the
        heads are shared code, and proposals chosen by top-k from nearly
        equal random-init scores could differ in order."""
        return tuple(_flatten(self.model.extract_feat(images)))

    def forward(self, images: Tensor) -> Tuple[Tensor, ...]:
        samples = self.samples(images)
        if self.training:
            losses = self.model(images, samples, mode='loss')
            loss, _ = self.model.parse_losses(losses)
            return (loss, )
        return tuple(_flatten(self.model(images, samples, mode='tensor')))


class ClassifierModel(nn.Module):
    """An mmpretrain classifier called as ``model(images)`` (its logits).

    Args:
        model (nn.Module): An mmpretrain classifier.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, images: Tensor) -> Tensor:
        return self.model(images, mode='tensor')


def build_whole_model(cfg, **backbone_args) -> nn.Module:
    """``cfg``'s model without pretrained weights, drop path or data
    preprocessor, called as ``model(images)``: a :class:`TaskModel` for
    mmdet / mmseg, a :class:`ClassifierModel` for mmpretrain.

    Args:
        cfg (Config): The config.
        **backbone_args: Overrides of the backbone's arguments.
    """
    import mmscalable.models  # noqa: F401  (registers the backbones)
    from mmengine.registry import MODELS, init_default_scope
    scope = cfg.get('default_scope')
    init_default_scope(scope)
    model_cfg = cfg.model.copy()
    model_cfg.backbone = dict(
        model_cfg.backbone, init_cfg=None, drop_path_rate=0., **backbone_args)
    # Images are fed as they are; the preprocessor is not part of it.
    model_cfg.pop('data_preprocessor', None)
    if scope == 'mmpretrain':
        # Train-time batch augments are not part of the model at test time.
        model_cfg.pop('train_cfg', None)
        return ClassifierModel(MODELS.build(model_cfg))
    return TaskModel(MODELS.build(model_cfg), scope)


def config_builder(config: str) -> Callable[[str], nn.Module]:
    """A benchmark builder ``fn(impl)`` for an mmdet / mmseg config."""
    from mmengine.config import Config
    cfg = Config.fromfile(config)
    scope = cfg.get('default_scope')
    if scope not in TASK_SCOPES:
        raise ValueError(f'{config}: default_scope must be one of '
                         f'{TASK_SCOPES} for a whole-model benchmark, got '
                         f'{scope!r}')

    def build(impl: str) -> nn.Module:
        return build_whole_model(cfg, attn_impl=impl)

    return build
