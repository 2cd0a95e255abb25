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

Only numpy, Pillow and the standard library are used here, so the generator
runs without the OpenMMLab libraries. Each image comes from its own random
generator seeded with ``(seed, set, split, index)`` (and the class for
``demo_cls``): the output is byte-for-byte reproducible
for a given seed (with the same Pillow build for the JPEG files), and growing
``num_train`` keeps the images already there.
"""
import json
import os
import os.path as osp
import shutil
import tempfile
import uuid
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np

#: Bump when the generated data changes, so that stale copies are replaced.
DEMO_DATA_VERSION = 1

#: Directory names of the demo sets under the data root.
DEMO_COCO_DIR = 'demo_coco'
DEMO_ADE_DIR = 'demo_ade'
DEMO_CLS_DIR = 'demo_cls'
DEMO_DIRS = (DEMO_COCO_DIR, DEMO_ADE_DIR, DEMO_CLS_DIR)

#: Name of the marker file written (last) into each complete demo set.
MARKER_FILE = '.demo_data.json'

#: Category names of ``demo_coco`` (category ids 1..3 in this order).
DEMO_COCO_CLASSES = ('square', 'circle', 'triangle')
#: Visualization colours of ``demo_coco`` (the mean colour of each shape).
DEMO_COCO_PALETTE = [(205, 55, 50), (60, 170, 70), (55, 90, 205)]

#: Class names of ``demo_ade``: label value ``k + 1`` in the PNG label maps
#: is class ``k`` after ``reduce_zero_label``; value 0 is unlabeled.
DEMO_ADE_CLASSES = ('sky', 'grass', 'square', 'circle')
#: Visualization colours of ``demo_ade`` (sky and grass as in ADE20K).
DEMO_ADE_PALETTE = [[6, 230, 230], [4, 250, 7], [220, 20, 60], [255, 200, 0]]

#: Class names of ``demo_cls``, in the order of their labels. mmpretrain's
#: ``CustomDataset`` numbers the class folders alphabetically, whatever the
#: order of ``metainfo['classes']``: this tuple is sorted so that label ``k``
#: is the folder ``DEMO_CLS_CLASSES[k]``.
DEMO_CLS_CLASSES = ('circle', 'square', 'triangle')

#: Parameters that :func:`ensure_demo_data` generates the sets with.
DEMO_COCO_DEFAULTS = dict(
    num_train=96, num_val=24, image_size=(128, 128), seed=0)
DEMO_ADE_DEFAULTS = dict(
    num_train=96, num_val=24, image_size=(128, 128), seed=0)
#: ``num_train`` and ``num_val`` of ``demo_cls`` count images per class.
DEMO_CLS_DEFAULTS = dict(
    num_train=120, num_val=30, image_size=(64, 64), seed=0)

# Relative size (of the shorter image side) of a shape's extent.
_SIZE_RANGE = (0.15, 0.45)
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
# Drawing helpers
# ---------------------------------------------------------------------------
def _check_size(image_size: Sequence[int]) -> Tuple[int, int]:
    h, w = (int(v) for v in image_size)
    if h < 32 or w < 32:
        raise ValueError(f'image_size must be at least 32x32, got {h}x{w}')
    return h, w


def _signed_area(poly: np.ndarray) -> float:
    """Shoelace area of a polygon given as an (N, 2) array of (x, y)."""
    x, y = poly[:, 0], poly[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(np.roll(x, -1), y))


def _rasterize_convex(poly: np.ndarray, h: int, w: int) -> np.ndarray:
    """Rasterize a convex polygon at pixel centres.

    Pixel ``(row, col)`` covers ``[col, col + 1) x [row, row + 1)`` as in
    COCO, and is inside when its centre ``(col + 0.5, row + 0.5)`` is.

    Args:
        poly (np.ndarray): (N, 2) vertices (x, y) of a convex polygon.
        h (int): Image height.
        w (int): Image width.

    Returns:
        np.ndarray: Boolean mask of shape (h, w).
    """
    if _signed_area(poly) < 0:
        poly = poly[::-1]
    mask = np.zeros((h, w), dtype=bool)
    x0 = max(int(np.floor(poly[:, 0].min())), 0)
    x1 = min(int(np.ceil(poly[:, 0].max())), w)
    y0 = max(int(np.floor(poly[:, 1].min())), 0)
    y1 = min(int(np.ceil(poly[:, 1].max())), h)
    if x1 <= x0 or y1 <= y0:
        return mask
    py = np.arange(y0, y1, dtype=np.float64)[:, None] + 0.5
    px = np.arange(x0, x1, dtype=np.float64)[None, :] + 0.5
    inside = np.ones((y1 - y0, x1 - x0), dtype=bool)
    for a, b in zip(poly, np.roll(poly, -1, axis=0)):
        # Left of (or on) every edge of a counter-clockwise polygon.
        inside &= (b[0] - a[0]) * (py - a[1]) - (b[1] - a[1]) * (px - a[0]) \
            >= 0
    mask[y0:y1, x0:x1] = inside
    return mask


def _smooth_noise(rng: np.random.Generator, h: int, w: int,
                  cells: int) -> np.ndarray:
    """Low-frequency noise in [-1, 1]: a coarse grid, bilinearly upsampled."""
    grid = rng.uniform(-1.0, 1.0, size=(cells + 1, cells + 1))
    ys = (np.arange(h) + 0.5) / h * cells
    xs = (np.arange(w) + 0.5) / w * cells
    iy = np.minimum(ys.astype(int), cells - 1)
    ix = np.minimum(xs.astype(int), cells - 1)
    fy = (ys - iy)[:, None]
    fx = (xs - ix)[None, :]
    g00 = grid[iy][:, ix]
    g01 = grid[iy][:, ix + 1]
    g10 = grid[iy + 1][:, ix]
    g11 = grid[iy + 1][:, ix + 1]
    return ((1 - fy) * ((1 - fx) * g00 + fx * g01) + fy *
            ((1 - fx) * g10 + fx * g11))


def _gradient(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A linear ramp in [-1, 1] along a random direction."""
    theta = rng.uniform(0, 2 * np.pi)
    ys = (np.arange(h) + 0.5)[:, None] / h - 0.5
    xs = (np.arange(w) + 0.5)[None, :] / w - 0.5
    return (np.cos(theta) * xs + np.sin(theta) * ys) * np.sqrt(2)


def _jitter_colour(rng: np.random.Generator, base: Sequence[int],
                   amount: float) -> np.ndarray:
    return np.asarray(base, dtype=np.float64) + rng.uniform(
        -amount, amount, size=3)


def _shape_polygon(rng: np.random.Generator, kind: str, size: float,
                   cx: float, cy: float) -> np.ndarray:
    """Vertices (x, y) of a shape whose extent is about ``size`` pixels.

    Args:
        rng (np.random.Generator): Random generator.
        kind (str): 'square', 'circle' or 'triangle'.
        size (float): Side of the square, diameter of the circle, side of the
            triangle.
        cx (float): x of the centre.
        cy (float): y of the centre.

    Returns:
        np.ndarray: (N, 2) float array of vertices.
    """
    if kind == 'square':
        # Mildly rotated axis-aligned square.
        angles = np.deg2rad(rng.uniform(-15, 15)) + np.pi / 4 + \
            np.arange(4) * np.pi / 2
        radius = size / np.sqrt(2)
        radii = np.full(4, radius)
    elif kind == 'circle':
        angles = rng.uniform(0, 2 * np.pi / 24) + \
            np.arange(24) * 2 * np.pi / 24
        radii = np.full(24, size / 2)
    elif kind == 'triangle':
        # Roughly equilateral, any orientation, vertices jittered by <=8%.
        angles = rng.uniform(0, 2 * np.pi) + np.arange(3) * 2 * np.pi / 3 + \
            rng.uniform(-0.15, 0.15, size=3)
        radii = size / np.sqrt(3) * rng.uniform(0.92, 1.0, size=3)
    else:
        raise ValueError(f'unknown shape {kind!r}')
    return np.stack([cx + radii * np.cos(angles), cy + radii * np.sin(angles)],
                    axis=1)


def _place_shapes(
        rng: np.random.Generator,
        kinds: Sequence[str],
        h: int,
        w: int,
        size_range: Tuple[float, float] = _SIZE_RANGE
) -> List[Tuple[str, np.ndarray]]:
    """Place shapes of the given kinds without any overlap.

    Shapes that cannot be placed after a few tries are dropped; the first one
    always fits.

    Args:
        size_range (tuple[float, float]): Range of a shape's size, relative
            to the shorter image side; at most 0.65 so that a shape fits.

    Returns:
        list[tuple[str, np.ndarray]]: (kind, polygon) pairs; polygon
        coordinates are rounded to 2 decimals (as stored in the annotations).
    """
    side = min(h, w)
    placed = []  # (kind, poly, cx, cy, circumradius)
    for kind in kinds:
        for _ in range(30):
            size = rng.uniform(*size_range) * side
            # Circumradius bound of every shape kind: size / sqrt(2).
            bound = size / np.sqrt(2) + 1.0
            cx = rng.uniform(bound, w - bound)
            cy = rng.uniform(bound, h - bound)
            poly = np.round(_shape_polygon(rng, kind, size, cx, cy), 2)
            radius = float(np.hypot(poly[:, 0] - cx, poly[:, 1] - cy).max())
            if all(
                    np.hypot(cx - ox, cy - oy) > radius + orad + 1.0
                    for _, _, ox, oy, orad in placed):
                placed.append((kind, poly, cx, cy, radius))
                break
    return [(kind, poly) for kind, poly, _, _, _ in placed]


def _textured_background(rng: np.random.Generator, h: int,
                         w: int) -> np.ndarray:
    """Low-saturation grey with a gradient, blotches and fine noise."""
    base = rng.uniform(85, 165) + rng.uniform(-12, 12, size=3)
    img = np.empty((h, w, 3), dtype=np.float64)
    img[:] = base
    img += rng.uniform(10, 30) * _gradient(rng, h, w)[..., None]
    img += 12 * _smooth_noise(rng, h, w, cells=8)[..., None]
    img += rng.normal(0, 5, size=(h, w, 3))
    return img


def _to_uint8(img: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


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
_COCO_COLOURS = dict(zip(DEMO_COCO_CLASSES, DEMO_COCO_PALETTE))


def _draw_coco_image(rng: np.random.Generator, index: int, h: int, w: int
                     ) -> Tuple[np.ndarray, List[Tuple[str, np.ndarray]]]:
    """Draw one image of the instance set and return it with its shapes."""
    img = _textured_background(rng, h, w)

    num = int(rng.integers(1, 5))
    # The first shape cycles through the classes so that every class appears
    # in any split of three or more images.
    kinds = [DEMO_COCO_CLASSES[index % len(DEMO_COCO_CLASSES)]] + [
        DEMO_COCO_CLASSES[k]
        for k in rng.integers(0, len(DEMO_COCO_CLASSES), size=num - 1)
    ]
    shapes = _place_shapes(rng, kinds, h, w)
    for kind, poly in shapes:
        mask = _rasterize_convex(poly, h, w)
        colour = _jitter_colour(rng, _COCO_COLOURS[kind], 30)
        img[mask] = colour + rng.normal(0, 3, size=(int(mask.sum()), 3))
    return _to_uint8(img), shapes


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
    h, w = _check_size(image_size)
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
            img, shapes = _draw_coco_image(rng, index, h, w)
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
                        area=round(abs(_signed_area(poly)), 2),
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
# Label values in the PNG maps (0 is unlabeled).
_ADE_LABELS = {name: i + 1 for i, name in enumerate(DEMO_ADE_CLASSES)}
_ADE_SHAPES = ('square', 'circle')
_ADE_SHAPE_COLOURS = dict(square=(200, 50, 50), circle=(235, 205, 55))


def _draw_ade_image(rng: np.random.Generator, index: int, h: int,
                    w: int) -> Tuple[np.ndarray, np.ndarray]:
    """Draw one image of the semantic set and return it with its labels."""
    rows = (np.arange(h) + 0.5)[:, None]
    cols = (np.arange(w) + 0.5)[None, :]
    # Wavy, slightly tilted horizon between 35% and 65% of the height.
    horizon = (
        rng.uniform(0.35, 0.65) * h + rng.uniform(-0.15, 0.15) *
        (cols - w / 2) + rng.uniform(0, 3) *
        np.sin(2 * np.pi * rng.uniform(0.5, 2.5) * cols / w +
               rng.uniform(0, 2 * np.pi)))
    dist = rows - horizon  # < 0: sky, > 0: grass
    band = rng.uniform(0.8, 1.6)  # half-width of the unlabeled band
    label = np.zeros((h, w), dtype=np.uint8)
    label[dist < -band] = _ADE_LABELS['sky']
    label[dist > band] = _ADE_LABELS['grass']

    img = np.empty((h, w, 3), dtype=np.float64)
    # Sky: darker blue at the top, paler towards the horizon.
    top = _jitter_colour(rng, (80, 135, 215), 15)
    low = _jitter_colour(rng, (170, 200, 238), 12)
    t = np.clip(rows / np.maximum(horizon, 1.0), 0, 1)[..., None]
    sky = (1 - t) * top + t * low
    sky += 6 * _smooth_noise(rng, h, w, cells=6)[..., None]
    # Grass: textured green.
    grass = np.empty_like(img)
    grass[:] = _jitter_colour(rng, (65, 140, 55), 15)
    grass += 18 * _smooth_noise(rng, h, w, cells=16)[..., None]
    grass += rng.normal(0, 8, size=(h, w, 3))
    img[:] = np.where((dist < 0)[..., None], sky, grass)
    # The unlabeled band: a dark hedge line.
    band_mask = label == 0
    img[band_mask] = _jitter_colour(rng, (85, 70, 50), 15)

    num = int(rng.integers(1, 4))
    kinds = [_ADE_SHAPES[index % len(_ADE_SHAPES)]] + [
        _ADE_SHAPES[k] for k in rng.integers(0, len(_ADE_SHAPES), size=num - 1)
    ]
    for kind, poly in _place_shapes(rng, kinds, h, w):
        mask = _rasterize_convex(poly, h, w)
        img[mask] = _jitter_colour(rng, _ADE_SHAPE_COLOURS[kind], 25)
        label[mask] = _ADE_LABELS[kind]
    img += rng.normal(0, 3, size=(h, w, 3))
    return _to_uint8(img), label


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
    h, w = _check_size(image_size)
    for split, subdir, num in (('train', 'training', num_train),
                               ('val', 'validation', num_val)):
        img_dir = osp.join(root, 'images', subdir)
        ann_dir = osp.join(root, 'annotations', subdir)
        os.makedirs(img_dir, exist_ok=True)
        os.makedirs(ann_dir, exist_ok=True)
        for index in range(int(num)):
            rng = np.random.default_rng(
                [int(seed), _ADE_STREAM, _SPLITS[split], index])
            img, label = _draw_ade_image(rng, index, h, w)
            name = _image_name(index)
            _save_jpeg(img, osp.join(img_dir, name + '.jpg'))
            _save_png_label(label, osp.join(ann_dir, name + '.png'))
    return root


# ---------------------------------------------------------------------------
# ImageNet-style classification set
# ---------------------------------------------------------------------------
# Centre hue (degrees) of each class and the half-width of its hue range:
# neighbouring ranges overlap by 2 * _CLS_HUE_JITTER - 120 degrees, so the
# hue alone names the class only about three times in four.
_CLS_HUES = dict(circle=0.0, square=120.0, triangle=240.0)
_CLS_HUE_JITTER = 80.0
# A single, larger shape than in demo_coco (relative to the image side).
_CLS_SIZE_RANGE = (0.45, 0.65)


def _hsv_to_rgb(hue: float, sat: float, val: float) -> np.ndarray:
    """RGB (0..255 floats) of a hue in degrees, saturation and value."""
    import colorsys
    return 255 * np.asarray(colorsys.hsv_to_rgb((hue % 360) / 360, sat, val))


def _draw_cls_image(rng: np.random.Generator, kind: str, h: int,
                    w: int) -> np.ndarray:
    """Draw one image of the classification set: one shape of ``kind``."""
    img = _textured_background(rng, h, w)
    ((_, poly), ) = _place_shapes(rng, [kind], h, w, _CLS_SIZE_RANGE)
    mask = _rasterize_convex(poly, h, w)
    hue = _CLS_HUES[kind] + rng.uniform(-_CLS_HUE_JITTER, _CLS_HUE_JITTER)
    colour = _hsv_to_rgb(hue, rng.uniform(0.5, 0.9), rng.uniform(0.6, 0.95))
    img[mask] = colour + rng.normal(0, 4, size=(int(mask.sum()), 3))
    return _to_uint8(img)


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
    h, w = _check_size(image_size)
    for split, num in (('train', num_train), ('val', num_val)):
        for label, kind in enumerate(DEMO_CLS_CLASSES):
            img_dir = osp.join(root, split, kind)
            os.makedirs(img_dir, exist_ok=True)
            for index in range(int(num)):
                rng = np.random.default_rng(
                    [int(seed), _CLS_STREAM, _SPLITS[split], label, index])
                img = _draw_cls_image(rng, kind, h, w)
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
