# Copyright (c) mmscalable contributors. All rights reserved.
"""Parameters and FLOPs of whole models at the papers' resolutions, next to
the figures the papers report (read from the model-index metafiles).

One multiply-add is one FLOP (mmengine's ``FlopAnalyzer``, fvcore's
counter), in one of two conventions, as the papers count:

- ``'fvcore'``: every op, the attention matmuls included. The papers'
  ImageNet tables (the official repositories count with fvcore).
- ``'mmcv'``: the layers only (convolutions, linear layers, norms), not the
  matmuls between activations, as mmcv's ``get_model_complexity_info``
  that mmdet / mmseg 2.x's ``get_flops.py`` used. The dense tables of the
  papers and of the Swin / PVT lineage they compare with: ScalableViT-S
  Mask R-CNN is 254 G this way against the paper's 256 G, 294 G with the
  matmuls.

Resolutions, as those papers: classification at the test crop (224, 384,
448), Mask R-CNN and RetinaNet at 1280x800 (height 1280), UperNet and
Semantic FPN at 512x2048. Detectors are counted in mmdet's tensor
mode: the RPN's top 1000 proposals through the box head and the first 100
through the mask head, as mmdet 2.x's ``forward_dummy``.

Every attention is counted on its reference path (``impl='reference'``,
the official computation), whatever ``impl`` the model was built with
(:func:`count_flops`): the fast paths compute the same function with other
operations (frozen norms folded into convs, products written in place,
compiled ops that the tracer replaces by their references), so the counter
would see a different number of them, and the figure would depend on the
implementation rather than on the model.
"""
import json
import os.path as osp
from collections import Counter
from contextlib import contextmanager
from functools import lru_cache
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
from mmengine.config import Config

from .task_models import build_whole_model

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
# Lists the metafiles (``Import``), each the models of one family.
MODEL_INDEX = osp.join(ROOT, 'model-index.yml')


def paper_resolution(cfg: Config) -> Tuple[int, int]:
    """(height, width) a config's model is counted at."""
    scope = cfg.get('default_scope')
    if scope == 'mmdet':
        return 1280, 800
    if scope == 'mmseg':
        # UperNet and Semantic FPN alike, as Swin and Twins (ScalableViT's
        # FPN table is Twins'); PVT's FPN table used 512x512.
        return 512, 2048
    if scope == 'mmpretrain':
        # The test pipeline's last step that fixes both sides: a center crop
        # (the 224 configs) or a resize to a fixed scale (some 384 configs),
        # both given as (width, height) or one side.
        size = (224, 224)
        for step in cfg.test_dataloader.dataset.pipeline:
            if step['type'] == 'CenterCrop':
                side = step['crop_size']
            elif (step['type'] == 'Resize' and 'scale' in step
                  and not step.get('keep_ratio', False)):
                side = step['scale']
            else:
                continue
            size = ((side, side) if isinstance(side, int) else
                    (side[1], side[0]))
        return size
    raise ValueError(f'{cfg.filename}: cannot count a {scope} model')


# Ops between activations that mmcv's counter, which only sees modules,
# never counted.
ACTIVATION_MATMULS = ('aten::matmul', 'aten::bmm', 'aten::einsum',
                      'aten::baddbmm',
                      'aten::scaled_dot_product_attention')
CONVENTIONS = ('fvcore', 'mmcv')


def _no_flops(inputs, outputs) -> Counter:
    return Counter()


def paper_convention(cfg: Config) -> str:
    """The counting convention of the papers' table for a config's task."""
    return 'fvcore' if cfg.get('default_scope') == 'mmpretrain' else 'mmcv'


@lru_cache()
def _metafile_models(index: str = MODEL_INDEX) -> Tuple[dict, ...]:
    """The model entries of every metafile that ``index`` imports (read
    once)."""
    from mmengine.fileio import load
    root = osp.dirname(index)
    return tuple(model for metafile in load(index)['Import']
                 for model in load(osp.join(root, metafile))['Models'])


def reported(config: str) -> Dict[str, Optional[float]]:
    """The paper's parameters and FLOPs of ``config`` from the metafiles
    (None where the paper gives none): ``Reported Parameters`` (the
    metafiles' ``Parameters`` are those of the model the config builds) and
    ``FLOPs``."""
    rel = osp.relpath(osp.abspath(config), ROOT)
    for model in _metafile_models():
        if model['Config'] == rel:
            meta = model.get('Metadata', {})
            return dict(
                params=meta.get('Reported Parameters'),
                flops=meta.get('FLOPs'))
    return dict(params=None, flops=None)


def count(config: str,
          shape: Optional[Tuple[int, int]] = None,
          convention: Optional[str] = None) -> Dict[str, object]:
    """Parameters and FLOPs of one image through ``config``'s model.

    Args:
        config (str): An mmdet, mmseg or mmpretrain config.
        shape (tuple[int, int], optional): (height, width); None for the
            paper's resolution of the task (:func:`paper_resolution`).
        convention (str, optional): ``'fvcore'`` or ``'mmcv'`` (see the
            module's docstring); None for the paper's.
    """
    cfg = Config.fromfile(config)
    height, width = shape or paper_resolution(cfg)
    convention = convention or paper_convention(cfg)
    if convention not in CONVENTIONS:
        raise ValueError(f'convention must be one of {CONVENTIONS}, got '
                         f'{convention!r}')
    # Configs that differ in their schedule or data only (1x and 3x, AMP)
    # build the same model: it is counted once per process.
    key = (json.dumps(cfg.model.to_dict(), sort_keys=True, default=repr),
           height, width, convention)
    if key not in _COUNTED:
        _COUNTED[key] = _count_model(cfg, height, width, convention)
    params, flops = _COUNTED[key]
    paper = reported(config)
    return dict(
        config=osp.relpath(osp.abspath(config), ROOT),
        shape=(height, width),
        convention=convention,
        params=params,
        flops=flops,
        paper_params=paper['params'],
        paper_flops=paper['flops'])


_COUNTED: Dict[tuple, Tuple[int, float]] = {}


@contextmanager
def reference_attention(model: nn.Module) -> Iterator[nn.Module]:
    """Run every attention of ``model`` on its reference path inside the
    block: the modules' ``impl`` (and the backbones' ``attn_impl``) read
    ``'reference'`` there and their own value again afterwards.

    Both paths use the same parameters, so nothing else changes.

    Args:
        model (nn.Module): Any model; modules without an attention ``impl``
            are left alone.
    """
    from mmscalable.models.layers.attention_impl import ATTENTION_IMPLS
    switched = []
    for module in model.modules():
        for name in ('impl', 'attn_impl'):
            impl = getattr(module, name, None)
            if isinstance(impl, str) and impl in ATTENTION_IMPLS:
                switched.append((module, name, impl))
    try:
        for module, name, _ in switched:
            setattr(module, name, 'reference')
        yield model
    finally:
        for module, name, impl in switched:
            setattr(module, name, impl)


def count_flops(model: nn.Module,
                inputs: Tuple,
                convention: str = 'fvcore') -> float:
    """FLOPs (multiply-adds) of ``model(*inputs)`` in eval mode, with every
    attention counted on its reference path (:func:`reference_attention`),
    so that a model gives one figure whichever ``impl`` it was built with.

    Args:
        model (nn.Module): The model; its training mode is restored
            afterwards.
        inputs (tuple): The positional arguments of its forward.
        convention (str): ``'fvcore'`` or ``'mmcv'`` (see the module's
            docstring). Defaults to ``'fvcore'``.

    Returns:
        float: The count.
    """
    from mmengine.analysis import FlopAnalyzer
    if convention not in CONVENTIONS:
        raise ValueError(f'convention must be one of {CONVENTIONS}, got '
                         f'{convention!r}')
    training = model.training
    model.eval()
    try:
        with reference_attention(model), torch.no_grad():
            analyzer = FlopAnalyzer(model, tuple(inputs))
            analyzer.unsupported_ops_warnings(False)
            analyzer.uncalled_modules_warnings(False)
            if convention == 'mmcv':
                # A zero count, not None: mmengine 0.10.7 keeps counting
                # ops whose handle is set to None.
                analyzer.set_op_handle(
                    **{op: _no_flops
                       for op in ACTIVATION_MATMULS})
            return float(analyzer.total())
    finally:
        model.train(training)


def _count_model(cfg: Config, height: int, width: int,
                 convention: str) -> Tuple[int, float]:
    """Parameters and FLOPs of one image through ``cfg``'s model."""
    model = build_whole_model(cfg)
    params = sum(p.numel() for p in model.parameters())
    images = torch.randn(1, 3, height, width)
    torch.manual_seed(0)
    return params, count_flops(model, (images, ), convention)


def _relative(value: float, paper: Optional[float]) -> str:
    if not paper:
        return '-'
    return f'{100 * (value - paper) / paper:+.1f}%'


def markdown_table(records: Sequence[dict]) -> str:
    """A table of :func:`count` records, with the paper's figures."""
    lines = [
        '| config | input | params (M) | paper | FLOPs (G) | counted as | '
        'paper | FLOPs vs paper |', '|---|---|---|---|---|---|---|---|'
    ]
    for r in records:
        paper_params = (f'{r["paper_params"] / 1e6:.1f}'
                        if r['paper_params'] else '-')
        paper_flops = (f'{r["paper_flops"] / 1e9:.1f}'
                       if r['paper_flops'] else '-')
        lines.append(f'| {osp.basename(r["config"])[:-3]} | '
                     f'{r["shape"][0]}x{r["shape"][1]} | '
                     f'{r["params"] / 1e6:.1f} | {paper_params} | '
                     f'{r["flops"] / 1e9:.1f} | {r["convention"]} | '
                     f'{paper_flops} | '
                     f'{_relative(r["flops"], r["paper_flops"])} |')
    return '\n'.join(lines) + '\n'


def configs_with_reported_flops() -> List[str]:
    """Every config whose metafile entry has the paper's FLOPs."""
    return [
        osp.join(ROOT, model['Config']) for model in _metafile_models()
        if model.get('Metadata', {}).get('FLOPs')
    ]
