# Copyright (c) mmscalable contributors. All rights reserved.
"""A small embedded demo dataset, generated deterministically.

Nothing is downloaded: the images are drawn with numpy and written with
Pillow. Three sets are produced:

* ``demo_coco``: COCO-format instance segmentation. Each image shows one to
  four non-overlapping solid-colour shapes (``square``, ``circle``,
  ``triangle``; category ids 1..3) on a mildly textured background. Every
  instance has a polygon ``segmentation``, a ``bbox``, an ``area`` (the
  polygon area), ``iscrowd=0``, ``image_id`` and ``id``::

      demo_coco/
          train/000001.jpg ...
          val/000001.jpg ...
          annotations/instances_train.json
          annotations/instances_val.json

* ``demo_ade``: ADE20K-format semantic segmentation. Each image is a sky
  above grass split by a wavy horizon, plus one to three squares and
  circles. Label maps are single-channel uint8 PNGs with values 1..4
  (``sky``, ``grass``, ``square``, ``circle``) and 0 for a thin unlabeled band
  along the horizon, so that ``reduce_zero_label=True`` (0 -> 255 ignored,
  k -> k - 1) is exercised exactly as with ADE20K::

      demo_ade/
          images/training/000001.jpg ...
          images/validation/000001.jpg ...
          annotations/training/000001.png ...
          annotations/validation/000001.png ...

* ``demo_cls``: ImageNet-style image classification, one folder per class.
  Each image shows a single ``circle``, ``square`` or ``triangle`` of jittered
  position, size and colour on the textured background of ``demo_coco``. The
  hue ranges of the classes overlap, so that the colour hints at the class
  but the shape decides it::

      demo_cls/
          train/circle/000001.jpg ...
          train/square/000001.jpg ...
          train/triangle/000001.jpg ...
          val/circle/000001.jpg ...

The pictures are drawn by :mod:`mmscalable.datasets.demo_drawing`; this
module writes them in each set's format and generates the sets once per data
root. Only numpy, Pillow and the standard library are used, so the generator
runs without the OpenMMLab libraries. Each image comes from its own random
generator seeded with ``(seed, set, split, index)`` (and the class for
``demo_cls``): the output is byte-for-byte reproducible for a given seed
(with the same Pillow build for the JPEG files), and growing ``num_train``
keeps the images already there.
"""
import json
import os
import os.path as osp
import shutil
import tempfile
import uuid
from typing import Dict, NamedTuple, Optional, Sequence

import numpy as np

from .demo_drawing import (DEMO_ADE_CLASSES, DEMO_ADE_PALETTE,
                           DEMO_CLS_CLASSES, DEMO_COCO_CLASSES,
                           DEMO_COCO_PALETTE, check_size, draw_ade_image,
                           draw_cls_image, draw_coco_image, signed_area)

__all__ = [
    'DEMO_ADE_CLASSES', 'DEMO_ADE_DEFAULTS', 'DEMO_ADE_DIR',
    'DEMO_ADE_PALETTE', 'DEMO_CLS_CLASSES', 'DEMO_CLS_DEFAULTS',
    'DEMO_CLS_DIR', 'DEMO_COCO_CLASSES', 'DEMO_COCO_DEFAULTS',
    'DEMO_COCO_DIR', 'DEMO_COCO_PALETTE', 'DEMO_DATA_VERSION', 'DEMO_DIRS',
    'MARKER_FILE', 'DemoDataPaths', 'ensure_demo_data',
    'is_demo_data_up_to_date', 'make_demo_ade', 'make_demo_cls',
    'make_demo_coco'
]

#: Bump when the generated data changes, so that stale copies are replaced.
DEMO_DATA_VERSION = 1

#: Directory names of the demo sets under the data root.
DEMO_COCO_DIR = 'demo_coco'
DEMO_ADE_DIR = 'demo_ade'
DEMO_CLS_DIR = 'demo_cls'
DEMO_DIRS = (DEMO_COCO_DIR, DEMO_ADE_DIR, DEMO_CLS_DIR)

#: Name of the marker file written (last) into each complete demo set.
MARKER_FILE = '.demo_data.json'

#: Parameters that :func:`ensure_demo_data` generates the sets with.
DEMO_COCO_DEFAULTS = dict(
    num_train=96, num_val=24, image_size=(128, 128), seed=0)
DEMO_ADE_DEFAULTS = dict(
    num_train=96, num_val=24, image_size=(128, 128), seed=0)
#: ``num_train`` and ``num_val`` of ``demo_cls`` count images per class.
DEMO_CLS_DEFAULTS = dict(
    num_train=120, num_val=30, image_size=(64, 64), seed=0)

_JPEG_KWARGS = dict(format='JPEG', quality=95, subsampling=0, optimize=False)
# Stream ids mixed into the seeds, so each set and split is independent.
_COCO_STREAM, _ADE_STREAM, _CLS_STREAM = 1, 2, 3
_SPLITS = {'train': 0, 'val': 1}


class DemoDataPaths(NamedTuple):
    """Roots of the generated demo sets.

    Attributes:
        coco (str): Root of the COCO-format instance set.
        ade (str): Root of the ADE20K-format semantic set.
        cls (str): Root of the ImageNet-style classification set.
    """
    coco: str
    ade: str
    cls: str


# ---------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------
def _save_jpeg(img: np.ndarray, path: str) -> None:
    from PIL import Image
    Image.fromarray(img).save(path, **_JPEG_KWARGS)


def _save_png_label(label: np.ndarray, path: str) -> None:
    from PIL import Image
    Image.fromarray(label).save(path, format='PNG')


def _dump_json(obj, path: str) -> None:
    with open(path, 'w', encoding='utf-8') as f:
        json.dump(obj, f, separators=(',', ':'))
        f.write('\n')


def _image_name(index: int) -> str:
    return f'{index + 1:06d}'


# ---------------------------------------------------------------------------
# COCO instance set
# ---------------------------------------------------------------------------
def make_demo_coco(
        root: str,
        num_train: int = DEMO_COCO_DEFAULTS['num_train'],
        num_val: int = DEMO_COCO_DEFAULTS['num_val'],
        image_size: Sequence[int] = DEMO_COCO_DEFAULTS['image_size'],
        seed: int = DEMO_COCO_DEFAULTS['seed']) -> str:
    """Write the COCO-format demo instance segmentation set.

    Files already under ``root`` with the same names are overwritten; use
    :func:`ensure_demo_data` for an atomic, cached generation.

    Args:
        root (str): Output directory; created if missing.
        num_train (int): Number of training images. Defaults to 96.
        num_val (int): Number of validation images. Defaults to 24.
        image_size (Sequence[int]): (H, W) of the images. Defaults to
            (128, 128).
        seed (int): Seed of the generation. Defaults to 0.

    Returns:
        str: ``root``.
    """
    h, w = check_size(image_size)
    categories = [
        dict(id=i + 1, name=name, supercategory='shape')
        for i, name in enumerate(DEMO_COCO_CLASSES)
    ]
    cat_ids = {c['name']: c['id'] for c in categories}
    os.makedirs(osp.join(root, 'annotations'), exist_ok=True)
    for split, num in (('train', num_train), ('val', num_val)):
        img_dir = osp.join(root, split)
        os.makedirs(img_dir, exist_ok=True)
        images, annotations = [], []
        for index in range(int(num)):
            rng = np.random.default_rng(
                [int(seed), _COCO_STREAM, _SPLITS[split], index])
            img, shapes = draw_coco_image(rng, index, h, w)
            file_name = _image_name(index) + '.jpg'
            _save_jpeg(img, osp.join(img_dir, file_name))
            # Ids start at 1: pycocotools' COCOeval never matches a gt id 0.
            image_id = index + 1
            images.append(
                dict(id=image_id, file_name=file_name, height=h, width=w))
            for kind, poly in shapes:
                x_min, y_min = poly.min(axis=0)
                x_max, y_max = poly.max(axis=0)
                annotations.append(
                    dict(
                        id=len(annotations) + 1,
                        image_id=image_id,
                        category_id=cat_ids[kind],
                        segmentation=[[float(v) for v in poly.reshape(-1)]],
                        area=round(abs(signed_area(poly)), 2),
                        bbox=[
                            round(float(x_min), 2),
                            round(float(y_min), 2),
                            round(float(x_max - x_min), 2),
                            round(float(y_max - y_min), 2)
                        ],
                        iscrowd=0))
        coco = dict(
            info=dict(
                description='mmscalable demo shapes (generated)',
                version=str(DEMO_DATA_VERSION)),
            licenses=[],
            images=images,
            annotations=annotations,
            categories=categories)
        _dump_json(coco, osp.join(root, 'annotations',
                                  f'instances_{split}.json'))
    return root


# ---------------------------------------------------------------------------
# ADE20K semantic set
# ---------------------------------------------------------------------------
def make_demo_ade(root: str,
                  num_train: int = DEMO_ADE_DEFAULTS['num_train'],
                  num_val: int = DEMO_ADE_DEFAULTS['num_val'],
                  image_size: Sequence[int] = DEMO_ADE_DEFAULTS['image_size'],
                  seed: int = DEMO_ADE_DEFAULTS['seed']) -> str:
    """Write the ADE20K-format demo semantic segmentation set.

    Files already under ``root`` with the same names are overwritten; use
    :func:`ensure_demo_data` for an atomic, cached generation.

    Args:
        root (str): Output directory; created if missing.
        num_train (int): Number of training images. Defaults to 96.
        num_val (int): Number of validation images. Defaults to 24.
        image_size (Sequence[int]): (H, W) of the images. Defaults to
            (128, 128).
        seed (int): Seed of the generation. Defaults to 0.

    Returns:
        str: ``root``.
    """
    h, w = check_size(image_size)
    for split, subdir, num in (('train', 'training', num_train),
                               ('val', 'validation', num_val)):
        img_dir = osp.join(root, 'images', subdir)
        ann_dir = osp.join(root, 'annotations', subdir)
        os.makedirs(img_dir, exist_ok=True)
        os.makedirs(ann_dir, exist_ok=True)
        for index in range(int(num)):
            rng = np.random.default_rng(
                [int(seed), _ADE_STREAM, _SPLITS[split], index])
            img, label = draw_ade_image(rng, index, h, w)
            name = _image_name(index)
            _save_jpeg(img, osp.join(img_dir, name + '.jpg'))
            _save_png_label(label, osp.join(ann_dir, name + '.png'))
    return root


# ---------------------------------------------------------------------------
# ImageNet-style classification set
# ---------------------------------------------------------------------------

def make_demo_cls(root: str,
                  num_train: int = DEMO_CLS_DEFAULTS['num_train'],
                  num_val: int = DEMO_CLS_DEFAULTS['num_val'],
                  image_size: Sequence[int] = DEMO_CLS_DEFAULTS['image_size'],
                  seed: int = DEMO_CLS_DEFAULTS['seed']) -> str:
    """Write the ImageNet-style demo classification set.

    ``root/{train,val}/<class>/<id>.jpg`` for every class of
    :data:`DEMO_CLS_CLASSES`. Files already under ``root`` with the same
    names are overwritten; use :func:`ensure_demo_data` for an atomic, cached
    generation.

    Args:
        root (str): Output directory; created if missing.
        num_train (int): Number of training images per class.
            Defaults to 120.
        num_val (int): Number of validation images per class.
            Defaults to 30.
        image_size (Sequence[int]): (H, W) of the images. Defaults to
            (64, 64).
        seed (int): Seed of the generation. Defaults to 0.

    Returns:
        str: ``root``.
    """
    h, w = check_size(image_size)
    for split, num in (('train', num_train), ('val', num_val)):
        for label, kind in enumerate(DEMO_CLS_CLASSES):
            img_dir = osp.join(root, split, kind)
            os.makedirs(img_dir, exist_ok=True)
            for index in range(int(num)):
                rng = np.random.default_rng(
                    [int(seed), _CLS_STREAM, _SPLITS[split], label, index])
                img = draw_cls_image(rng, kind, h, w)
                _save_jpeg(img, osp.join(img_dir, _image_name(index) + '.jpg'))
    return root


# ---------------------------------------------------------------------------
# Cached, atomic generation
# ---------------------------------------------------------------------------
def _marker(kind: str, params: dict) -> dict:
    params = dict(params)
    params['image_size'] = [int(v) for v in params['image_size']]
    return dict(
        generator='mmscalable.datasets.demo_data',
        version=DEMO_DATA_VERSION,
        kind=kind,
        params=params)


def _read_marker(path: str) -> Optional[dict]:
    try:
        with open(osp.join(path, MARKER_FILE), encoding='utf-8') as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _lock(root: str):
    """Take an exclusive lock on ``root`` (a no-op where fcntl is missing)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover (Windows)
        return None
    handle = open(osp.join(root, '.demo_data.lock'), 'a+')
    fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
    return handle


def _unlock(handle) -> None:
    if handle is not None:
        import fcntl
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
        handle.close()


def _generate_atomically(root: str, name: str, kind: str, make_fn,
                         params: dict, force: bool) -> str:
    """Generate one set into a temporary directory, then move it in place."""
    dst = osp.join(root, name)
    marker = _marker(kind, params)
    if not force and _read_marker(dst) == marker:
        return dst
    tmp = tempfile.mkdtemp(prefix=f'.{name}.tmp-', dir=root)
    try:
        os.chmod(tmp, 0o755)  # mkdtemp makes it private to the user.
        make_fn(tmp, **params)
        # The marker is written last: a set with a marker is complete.
        _dump_json(marker, osp.join(tmp, MARKER_FILE))
        trash = None
        if osp.lexists(dst):
            trash = osp.join(root, f'.{name}.old-{uuid.uuid4().hex[:8]}')
            os.rename(dst, trash)
        try:
            os.rename(tmp, dst)
        except OSError:
            # Without a lock another process may have been quicker.
            if _read_marker(dst) != marker:
                raise
        if trash is not None:
            shutil.rmtree(trash, ignore_errors=True)
    finally:
        if osp.isdir(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
    return dst


def ensure_demo_data(root: str = 'data', force: bool = False) -> DemoDataPaths:
    """Generate the demo sets under ``root`` unless they are up to date.

    ``root/demo_coco``, ``root/demo_ade`` and ``root/demo_cls`` are
    (re)generated when missing, when their marker file does not match the
    current generator version and parameters (:data:`DEMO_COCO_DEFAULTS`,
    :data:`DEMO_ADE_DEFAULTS`, :data:`DEMO_CLS_DEFAULTS`), or when ``force``
    is set. Each set is written to a temporary directory and renamed
    into place, under a file lock, so concurrent callers (tests, training
    tools) never see a partial set.

    Args:
        root (str): Parent directory of the sets. Defaults to 'data'.
        force (bool): Regenerate even if the sets are up to date.
            Defaults to False.

    Returns:
        DemoDataPaths: ``(coco, ade, cls)`` roots of the three sets.
    """
    os.makedirs(root, exist_ok=True)
    handle = _lock(root)
    try:
        coco = _generate_atomically(root, DEMO_COCO_DIR, 'coco',
                                    make_demo_coco, DEMO_COCO_DEFAULTS, force)
        ade = _generate_atomically(root, DEMO_ADE_DIR, 'ade', make_demo_ade,
                                   DEMO_ADE_DEFAULTS, force)
        cls = _generate_atomically(root, DEMO_CLS_DIR, 'cls', make_demo_cls,
                                   DEMO_CLS_DEFAULTS, force)
    finally:
        _unlock(handle)
    return DemoDataPaths(coco=coco, ade=ade, cls=cls)


def is_demo_data_up_to_date(root: str = 'data') -> Dict[str, bool]:
    """Tell which demo sets under ``root`` are complete and current.

    Args:
        root (str): Parent directory of the sets. Defaults to 'data'.

    Returns:
        dict[str, bool]: ``{'demo_coco': ..., 'demo_ade': ...,
        'demo_cls': ...}``.
    """
    expected = {
        DEMO_COCO_DIR: _marker('coco', DEMO_COCO_DEFAULTS),
        DEMO_ADE_DIR: _marker('ade', DEMO_ADE_DEFAULTS),
        DEMO_CLS_DIR: _marker('cls', DEMO_CLS_DEFAULTS),
    }
    return {
        name: _read_marker(osp.join(root, name)) == marker
        for name, marker in expected.items()
    }
