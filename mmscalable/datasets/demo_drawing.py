# Copyright (c) mmscalable contributors. All rights reserved.
"""The pictures of the demo sets, drawn with numpy.

Solid-colour shapes (squares, circles, triangles) placed without overlap on
textured backgrounds, for ``demo_coco`` and ``demo_cls``, and sky-and-grass
scenes with shapes for ``demo_ade``. Every function draws from the random
generator it is given, in a fixed order, so that a seeded generator gives the
same picture; :mod:`mmscalable.datasets.demo_data` seeds them and writes the
pictures and their annotations in each set's format.
"""
from typing import List, Sequence, Tuple

import numpy as np

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

# Relative size (of the shorter image side) of a shape's extent.
_SIZE_RANGE = (0.15, 0.45)


# ---------------------------------------------------------------------------
# Shapes and backgrounds
# ---------------------------------------------------------------------------
def check_size(image_size: Sequence[int]) -> Tuple[int, int]:
    """``(h, w)`` of ``image_size``, checked to be at least 32x32."""
    h, w = (int(v) for v in image_size)
    if h < 32 or w < 32:
        raise ValueError(f'image_size must be at least 32x32, got {h}x{w}')
    return h, w


def signed_area(poly: np.ndarray) -> float:
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
    if signed_area(poly) < 0:
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


# ---------------------------------------------------------------------------
# COCO instance set
# ---------------------------------------------------------------------------
_COCO_COLOURS = dict(zip(DEMO_COCO_CLASSES, DEMO_COCO_PALETTE))


def draw_coco_image(rng: np.random.Generator, index: int, h: int, w: int
                    ) -> Tuple[np.ndarray, List[Tuple[str, np.ndarray]]]:
    """Draw one image of the instance set and return it with its shapes.

    Args:
        rng (np.random.Generator): Random generator of this image.
        index (int): Index of the image in its split; the kind of its first
            shape cycles through :data:`DEMO_COCO_CLASSES` with it.
        h (int): Image height.
        w (int): Image width.

    Returns:
        tuple[np.ndarray, list[tuple[str, np.ndarray]]]: The (h, w, 3) uint8
        RGB image and its ``(kind, polygon)`` shapes, polygon coordinates
        rounded to 2 decimals.
    """
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


# ---------------------------------------------------------------------------
# ADE20K semantic set
# ---------------------------------------------------------------------------
# Label values in the PNG maps (0 is unlabeled).
_ADE_LABELS = {name: i + 1 for i, name in enumerate(DEMO_ADE_CLASSES)}
_ADE_SHAPES = ('square', 'circle')
_ADE_SHAPE_COLOURS = dict(square=(200, 50, 50), circle=(235, 205, 55))


def draw_ade_image(rng: np.random.Generator, index: int, h: int,
                   w: int) -> Tuple[np.ndarray, np.ndarray]:
    """Draw one image of the semantic set and return it with its labels.

    Args:
        rng (np.random.Generator): Random generator of this image.
        index (int): Index of the image in its split; the kind of its first
            shape alternates between square and circle with it.
        h (int): Image height.
        w (int): Image width.

    Returns:
        tuple[np.ndarray, np.ndarray]: The (h, w, 3) uint8 RGB image and its
        (h, w) uint8 label map (values 1..4 after :data:`DEMO_ADE_CLASSES`,
        0 unlabeled).
    """
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


def draw_cls_image(rng: np.random.Generator, kind: str, h: int,
                   w: int) -> np.ndarray:
    """Draw one image of the classification set: one shape of ``kind``.

    Args:
        rng (np.random.Generator): Random generator of this image.
        kind (str): The class, one of :data:`DEMO_CLS_CLASSES`.
        h (int): Image height.
        w (int): Image width.

    Returns:
        np.ndarray: The (h, w, 3) uint8 RGB image.
    """
    img = _textured_background(rng, h, w)
    ((_, poly), ) = _place_shapes(rng, [kind], h, w, _CLS_SIZE_RANGE)
    mask = _rasterize_convex(poly, h, w)
    hue = _CLS_HUES[kind] + rng.uniform(-_CLS_HUE_JITTER, _CLS_HUE_JITTER)
    colour = _hsv_to_rgb(hue, rng.uniform(0.5, 0.9), rng.uniform(0.6, 0.95))
    img[mask] = colour + rng.normal(0, 4, size=(int(mask.sum()), 3))
    return _to_uint8(img)
