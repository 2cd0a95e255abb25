# Copyright (c) mmscalable contributors. All rights reserved.
"""Tests of the embedded demo data: generation, annotations, base configs."""
import concurrent.futures
import filecmp
import importlib.util
import json
import os
import os.path as osp
from pathlib import Path

import numpy as np
import pytest

from mmscalable.datasets import demo_data, demo_drawing
from mmscalable.datasets.demo_data import (DEMO_ADE_CLASSES,
                                           DEMO_ADE_PALETTE,
                                           DEMO_CLS_CLASSES,
                                           DEMO_COCO_CLASSES,
                                           DEMO_COCO_PALETTE,
                                           ensure_demo_data, make_demo_ade,
                                           make_demo_cls, make_demo_coco)

Image = pytest.importorskip('PIL.Image')

REPO = Path(__file__).resolve().parents[1]
COCO_CONFIG = REPO / 'configs/_base_/datasets/demo_coco_instance.py'
ADE_CONFIG = REPO / 'configs/_base_/datasets/demo_ade_semantic.py'
CLS_CONFIG = REPO / 'configs/_base_/datasets/demo_cls.py'

# Small sets keep the tests fast; 6 images are enough for every class to
# appear (the first shape of image i cycles through the classes).
COCO_KW = dict(num_train=6, num_val=3, image_size=(96, 112), seed=3)
ADE_KW = dict(num_train=4, num_val=2, image_size=(128, 128), seed=3)
# Images per class.
CLS_KW = dict(num_train=4, num_val=2, image_size=(64, 80), seed=3)


@pytest.fixture(scope='module')
def coco_root(tmp_path_factory):
    return make_demo_coco(str(tmp_path_factory.mktemp('coco')), **COCO_KW)


@pytest.fixture(scope='module')
def ade_root(tmp_path_factory):
    return make_demo_ade(str(tmp_path_factory.mktemp('ade')), **ADE_KW)


@pytest.fixture(scope='module')
def cls_root(tmp_path_factory):
    return make_demo_cls(str(tmp_path_factory.mktemp('cls')), **CLS_KW)


def _files(root):
    out = []
    for dirpath, _, names in os.walk(root):
        out += [osp.relpath(osp.join(dirpath, n), root) for n in names]
    return sorted(out)


def _pixels(path):
    with Image.open(path) as img:
        return np.asarray(img)


def _assert_same_sets(root_a, root_b):
    files = _files(root_a)
    assert files == _files(root_b)
    assert files
    for rel in files:
        a, b = osp.join(root_a, rel), osp.join(root_b, rel)
        if rel.endswith('.jpg'):
            # JPEG bytes depend on the libjpeg build; the pixels must match.
            np.testing.assert_array_equal(_pixels(a), _pixels(b))
        else:
            assert filecmp.cmp(a, b, shallow=False), rel


def _small_defaults(monkeypatch):
    monkeypatch.setattr(demo_data, 'DEMO_COCO_DEFAULTS', dict(COCO_KW))
    monkeypatch.setattr(demo_data, 'DEMO_ADE_DEFAULTS', dict(ADE_KW))
    monkeypatch.setattr(demo_data, 'DEMO_CLS_DEFAULTS', dict(CLS_KW))


# ---------------------------------------------------------------------------
# Generation
# ---------------------------------------------------------------------------
def test_coco_is_deterministic(tmp_path, coco_root):
    again = make_demo_coco(str(tmp_path / 'again'), **COCO_KW)
    _assert_same_sets(coco_root, again)
    other = make_demo_coco(str(tmp_path / 'other'), **dict(COCO_KW, seed=4))
    assert not np.array_equal(
        _pixels(osp.join(coco_root, 'train/000001.jpg')),
        _pixels(osp.join(other, 'train/000001.jpg')))


def test_ade_is_deterministic(tmp_path, ade_root):
    again = make_demo_ade(str(tmp_path / 'again'), **ADE_KW)
    _assert_same_sets(ade_root, again)
    other = make_demo_ade(str(tmp_path / 'other'), **dict(ADE_KW, seed=4))
    assert not filecmp.cmp(
        osp.join(ade_root, 'annotations/training/000001.png'),
        osp.join(other, 'annotations/training/000001.png'),
        shallow=False)


def test_cls_is_deterministic(tmp_path, cls_root):
    again = make_demo_cls(str(tmp_path / 'again'), **CLS_KW)
    _assert_same_sets(cls_root, again)
    other = make_demo_cls(str(tmp_path / 'other'), **dict(CLS_KW, seed=4))
    assert not np.array_equal(
        _pixels(osp.join(cls_root, 'train/circle/000001.jpg')),
        _pixels(osp.join(other, 'train/circle/000001.jpg')))
    # Growing the set keeps the images already there.
    more = make_demo_cls(str(tmp_path / 'more'), **dict(CLS_KW, num_train=5))
    for rel in ('train/square/000001.jpg', 'train/triangle/000004.jpg',
                'val/circle/000002.jpg'):
        np.testing.assert_array_equal(
            _pixels(osp.join(cls_root, rel)), _pixels(osp.join(more, rel)))


def test_more_images_keep_the_first_ones(tmp_path, coco_root):
    more = make_demo_coco(
        str(tmp_path / 'more'), **dict(COCO_KW, num_train=8))
    for name in ('000001.jpg', '000006.jpg'):
        np.testing.assert_array_equal(
            _pixels(osp.join(coco_root, 'train', name)),
            _pixels(osp.join(more, 'train', name)))


def test_coco_layout(coco_root):
    h, w = COCO_KW['image_size']
    for split, num in (('train', COCO_KW['num_train']),
                       ('val', COCO_KW['num_val'])):
        with open(osp.join(coco_root, f'annotations/instances_{split}.json'),
                  encoding='utf-8') as f:
            coco = json.load(f)
        assert [c['name'] for c in coco['categories']] == \
            list(DEMO_COCO_CLASSES)
        assert [c['id'] for c in coco['categories']] == [1, 2, 3]
        assert len(coco['images']) == num
        assert sorted(os.listdir(osp.join(coco_root, split))) == sorted(
            img['file_name'] for img in coco['images'])
        for img in coco['images']:
            assert (img['height'], img['width']) == (h, w)
            assert _pixels(osp.join(coco_root, split,
                                    img['file_name'])).shape == (h, w, 3)
        ann_ids = [a['id'] for a in coco['annotations']]
        assert ann_ids == list(range(1, len(ann_ids) + 1))
        per_image = np.bincount([a['image_id'] for a in coco['annotations']])
        assert per_image[0] == 0 and per_image[1:].min() >= 1
        assert per_image.max() <= 4


def test_coco_annotations_match_masks(coco_root):
    pytest.importorskip('pycocotools')
    from pycocotools.coco import COCO
    coco = COCO(osp.join(coco_root, 'annotations/instances_train.json'))
    side = min(COCO_KW['image_size'])
    seen = set()
    for ann in coco.loadAnns(coco.getAnnIds()):
        assert ann['iscrowd'] == 0
        poly = ann['segmentation']
        assert len(poly) == 1 and len(poly[0]) % 2 == 0
        n_vertices = len(poly[0]) // 2
        name = coco.loadCats(ann['category_id'])[0]['name']
        assert n_vertices == {'square': 4, 'circle': 24, 'triangle': 3}[name]
        seen.add(name)

        mask = coco.annToMask(ann).astype(bool)
        area = mask.sum()
        assert abs(area - ann['area']) <= 0.06 * ann['area'] + 4, ann
        x, y, bw, bh = ann['bbox']
        ys, xs = np.nonzero(mask)
        assert xs.min() >= np.floor(x) and xs.max() <= np.ceil(x + bw)
        assert ys.min() >= np.floor(y) and ys.max() <= np.ceil(y + bh)
        # Sizes are 15-45% of the image side (a rotated square's extent is
        # up to 22% more, a triangle's a little less).
        assert 0.12 * side <= max(bw, bh) <= 0.56 * side

        # The drawn shape is where the annotation says, in its colour.
        img_info = coco.loadImgs(ann['image_id'])[0]
        pixels = _pixels(
            osp.join(coco_root, 'train', img_info['file_name'])).astype(float)
        inner = mask.copy()  # away from the JPEG-blurred edge
        inner[1:] &= mask[:-1]
        inner[:-1] &= mask[1:]
        inner[:, 1:] &= mask[:, :-1]
        inner[:, :-1] &= mask[:, 1:]
        mean = pixels[inner].mean(axis=0)
        base = DEMO_COCO_PALETTE[DEMO_COCO_CLASSES.index(name)]
        assert np.abs(mean - base).max() < 40, (name, mean)
    assert seen == set(DEMO_COCO_CLASSES)


def test_ade_labels(ade_root):
    h, w = ADE_KW['image_size']
    for split, num in (('training', ADE_KW['num_train']),
                       ('validation', ADE_KW['num_val'])):
        images = sorted(os.listdir(osp.join(ade_root, 'images', split)))
        labels = sorted(os.listdir(osp.join(ade_root, 'annotations', split)))
        assert len(images) == num
        assert [osp.splitext(n)[0] for n in images] == \
            [osp.splitext(n)[0] for n in labels]
        assert all(n.endswith('.jpg') for n in images)
        seen = set()
        for name in labels:
            with Image.open(osp.join(ade_root, 'annotations', split,
                                     name)) as png:
                assert png.mode == 'L'
                label = np.asarray(png)
            assert label.shape == (h, w) and label.dtype == np.uint8
            values = set(np.unique(label).tolist())
            assert values <= {0, 1, 2, 3, 4}
            # Sky, grass and the unlabeled band are in every image.
            assert {0, 1, 2} <= values
            # The band is thin: a few percent of the pixels at most.
            assert (label == 0).mean() < 0.05
            seen |= values
        assert seen == {0, 1, 2, 3, 4}
    assert len(DEMO_ADE_CLASSES) == len(DEMO_ADE_PALETTE) == 4


def test_ade_image_matches_labels(ade_root):
    img = _pixels(osp.join(ade_root, 'images/training/000001.jpg'))
    with Image.open(osp.join(ade_root,
                             'annotations/training/000001.png')) as png:
        label = np.asarray(png)
    img = img.astype(float)
    sky, grass = img[label == 1].mean(0), img[label == 2].mean(0)
    assert sky[2] > sky[0] + 40  # blue
    assert grass[1] > grass[0] + 40 and grass[1] > grass[2] + 40  # green
    square = img[label == 3].mean(0)  # image 1 has a square first
    assert square[0] > square[1] + 80 and square[0] > square[2] + 80  # red


def test_cls_layout(cls_root):
    # Sorted: mmpretrain's CustomDataset numbers the folders alphabetically.
    assert DEMO_CLS_CLASSES == tuple(sorted(DEMO_CLS_CLASSES))
    assert set(DEMO_CLS_CLASSES) == set(DEMO_COCO_CLASSES)
    h, w = CLS_KW['image_size']
    for split, num in (('train', CLS_KW['num_train']),
                       ('val', CLS_KW['num_val'])):
        assert sorted(os.listdir(osp.join(cls_root, split))) == \
            list(DEMO_CLS_CLASSES)
        for name in DEMO_CLS_CLASSES:
            files = sorted(os.listdir(osp.join(cls_root, split, name)))
            # Balanced: the same images per class.
            assert files == [f'{i:06d}.jpg' for i in range(1, num + 1)]
            for file in files:
                img = _pixels(osp.join(cls_root, split, name, file))
                assert img.shape == (h, w, 3) and img.dtype == np.uint8
    assert sorted(os.listdir(cls_root)) == ['train', 'val']


def _shape_hue(img):
    """Median hue (degrees) of the saturated pixels: the shape's colour."""
    rgb = img.astype(float) / 255
    high, low = rgb.max(-1), rgb.min(-1)
    chroma = high - low
    shape = chroma > 0.3
    r, g, b = (c[shape] for c in np.moveaxis(rgb, -1, 0))
    hue = np.degrees(np.arctan2(np.sqrt(3) * (g - b), 2 * r - g - b))
    # The circular median around the circular mean.
    mean = np.degrees(np.angle(np.exp(1j * np.radians(hue)).mean()))
    return (mean + np.median((hue - mean + 180) % 360 - 180)) % 360


def test_cls_colour_does_not_give_the_class_away(tmp_path):
    """The class hues overlap: the nearest class hue is often wrong."""
    num = 30
    root = make_demo_cls(
        str(tmp_path / 'cls'), num_train=num, num_val=0, image_size=(64, 64))
    centres = np.array([demo_drawing._CLS_HUES[k] for k in DEMO_CLS_CLASSES])
    hits, offsets = 0, []
    for label, name in enumerate(DEMO_CLS_CLASSES):
        for file in sorted(os.listdir(osp.join(root, 'train', name))):
            hue = _shape_hue(_pixels(osp.join(root, 'train', name, file)))
            dist = np.abs((hue - centres + 180) % 360 - 180)
            hits += int(np.argmin(dist) == label)
            offsets.append((hue - centres[label] + 180) % 360 - 180)
    accuracy = hits / (num * len(DEMO_CLS_CLASSES))
    # Better than chance (1/3), far from perfect (about 3/4 expected).
    assert 0.45 < accuracy < 0.92, accuracy
    # Images on both sides reach past the midpoint to the neighbouring class
    # (60 degrees): about a quarter of them are expected there.
    offsets = np.array(offsets)
    assert (offsets < -60).sum() >= 5 and (offsets > 60).sum() >= 5, offsets


# ---------------------------------------------------------------------------
# ensure_demo_data and the CLI
# ---------------------------------------------------------------------------
def test_ensure_demo_data_caches_and_regenerates(tmp_path, monkeypatch):
    _small_defaults(monkeypatch)
    root = str(tmp_path / 'data')
    assert demo_data.is_demo_data_up_to_date(root) == {
        'demo_coco': False,
        'demo_ade': False,
        'demo_cls': False
    }
    paths = ensure_demo_data(root)
    assert paths == (osp.join(root, 'demo_coco'), osp.join(root, 'demo_ade'),
                     osp.join(root, 'demo_cls'))
    assert paths.coco.endswith('demo_coco') and paths.ade.endswith('demo_ade')
    assert paths.cls.endswith('demo_cls')
    assert demo_data.is_demo_data_up_to_date(root) == {
        'demo_coco': True,
        'demo_ade': True,
        'demo_cls': True
    }
    ann = osp.join(paths.coco, 'annotations/instances_train.json')
    label = osp.join(paths.ade, 'annotations/training/000001.png')
    image = osp.join(paths.cls, 'train/square/000001.jpg')
    stamp = (os.stat(ann).st_ino, os.stat(label).st_ino,
             os.stat(image).st_ino)

    # Up to date: nothing is rewritten.
    ensure_demo_data(root)
    assert (os.stat(ann).st_ino, os.stat(label).st_ino,
            os.stat(image).st_ino) == stamp

    # Other parameters: the stale set is replaced, the current ones kept.
    monkeypatch.setitem(demo_data.DEMO_COCO_DEFAULTS, 'num_val', 2)
    ensure_demo_data(root)
    assert os.stat(label).st_ino == stamp[1]
    assert os.stat(image).st_ino == stamp[2]
    with open(osp.join(paths.coco, 'annotations/instances_val.json')) as f:
        assert len(json.load(f)['images']) == 2
    monkeypatch.setitem(demo_data.DEMO_CLS_DEFAULTS, 'num_val', 1)
    assert not demo_data.is_demo_data_up_to_date(root)['demo_cls']
    ensure_demo_data(root)
    assert os.stat(label).st_ino == stamp[1]
    assert os.listdir(osp.join(paths.cls, 'val/circle')) == ['000001.jpg']

    # force regenerates everything, with the same content.
    with open(label, 'rb') as f:
        before = f.read()
    ensure_demo_data(root, force=True)
    assert os.stat(label).st_ino != stamp[1]
    with open(label, 'rb') as f:
        assert f.read() == before
    # No temporary or old copies are left behind.
    assert sorted(n for n in os.listdir(root) if not n.endswith('.lock')) \
        == ['demo_ade', 'demo_cls', 'demo_coco']


def test_ensure_demo_data_concurrent(tmp_path, monkeypatch):
    _small_defaults(monkeypatch)
    root = str(tmp_path / 'data')
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        results = list(pool.map(lambda _: ensure_demo_data(root), range(3)))
    assert all(r == results[0] for r in results)
    assert all(demo_data.is_demo_data_up_to_date(root).values())
    assert sorted(n for n in os.listdir(root) if not n.endswith('.lock')) \
        == ['demo_ade', 'demo_cls', 'demo_coco']


def test_cli(tmp_path, monkeypatch, capsys):
    _small_defaults(monkeypatch)
    spec = importlib.util.spec_from_file_location(
        'make_demo_data', REPO / 'tools/misc/make_demo_data.py')
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    # The CLI prints the defaults it imported: patch them there too.
    for name in ('DEMO_COCO_DEFAULTS', 'DEMO_ADE_DEFAULTS',
                 'DEMO_CLS_DEFAULTS'):
        monkeypatch.setattr(cli, name, getattr(demo_data, name))
    root = str(tmp_path / 'data')
    assert cli.main(['--root', root]) == 0
    out = capsys.readouterr().out
    assert out.count('generated') == 3
    assert 'demo_cls: generated (4 train / 2 val images per class' in out
    assert cli.main(['--root', root]) == 0
    assert capsys.readouterr().out.count('up to date') == 3
    assert cli.main(['--root', root, '--force']) == 0
    assert capsys.readouterr().out.count('generated') == 3


# ---------------------------------------------------------------------------
# Base configs with mmdet / mmseg / mmpretrain
# ---------------------------------------------------------------------------
def _load_config(path):
    pytest.importorskip('mmengine')
    from mmengine.config import Config
    return Config.fromfile(str(path))


def test_config_metainfo_matches_generator():
    coco = _load_config(COCO_CONFIG)
    assert tuple(coco.metainfo.classes) == DEMO_COCO_CLASSES
    assert [tuple(c) for c in coco.metainfo.palette] == \
        [tuple(c) for c in DEMO_COCO_PALETTE]
    assert coco.data_root.rstrip('/').endswith(demo_data.DEMO_COCO_DIR)
    ade = _load_config(ADE_CONFIG)
    assert tuple(ade.metainfo.classes) == DEMO_ADE_CLASSES
    assert [list(c) for c in ade.metainfo.palette] == DEMO_ADE_PALETTE
    assert ade.data_root.rstrip('/').endswith(demo_data.DEMO_ADE_DIR)
    # The configs' image size is the generated one.
    size = demo_data.DEMO_COCO_DEFAULTS['image_size']
    assert tuple(coco.img_scale) == (size[1], size[0])
    size = demo_data.DEMO_ADE_DEFAULTS['image_size']
    assert tuple(ade.crop_size) == tuple(size)
    cls = _load_config(CLS_CONFIG)
    assert tuple(cls.metainfo.classes) == DEMO_CLS_CLASSES
    assert cls.data_root.rstrip('/').endswith(demo_data.DEMO_CLS_DIR)
    assert cls.data_preprocessor.num_classes == len(DEMO_CLS_CLASSES)
    for loader in (cls.train_dataloader, cls.val_dataloader,
                   cls.test_dataloader):
        assert loader.dataset.data_root == cls.data_root


def _with_root(dataset_cfg, root):
    dataset_cfg = dataset_cfg.copy()
    dataset_cfg.data_root = root.rstrip('/') + '/'
    return dataset_cfg


def test_coco_config_builds_dataset_and_scores_gt(coco_root):
    pytest.importorskip('mmdet')
    import torch
    from mmengine.registry import init_default_scope

    from mmdet.registry import DATASETS, METRICS
    init_default_scope('mmdet')
    cfg = _load_config(COCO_CONFIG)

    train = DATASETS.build(_with_root(cfg.train_dataloader.dataset,
                                      coco_root))
    assert len(train) == COCO_KW['num_train']
    item = train[0]
    h, w = COCO_KW['image_size']
    gt = item['data_samples'].gt_instances
    assert len(gt) >= 1 and len(gt.masks) == len(gt)
    assert gt.labels.min() >= 0 and gt.labels.max() < 3
    assert item['data_samples'].ori_shape == (h, w)
    # 96x112 is resized to fit 128x128 keeping the ratio.
    assert tuple(item['inputs'].shape) == (3, 110, 128)
    assert gt.masks.height == 110 and gt.masks.width == 128

    # The ground truth, given as predictions, scores a perfect COCO mAP: the
    # annotations are well-formed for the real COCO metric.
    val = DATASETS.build(_with_root(cfg.val_dataloader.dataset, coco_root))
    assert len(val) == COCO_KW['num_val']
    metric_cfg = cfg.val_evaluator.copy()
    metric_cfg.ann_file = osp.join(coco_root,
                                   'annotations/instances_val.json')
    metric = METRICS.build(metric_cfg)
    metric.dataset_meta = val.metainfo
    for i in range(len(val)):
        sample = val[i]['data_samples']
        gt = sample.gt_instances
        # The test pipeline loads the annotations after Resize: they are in
        # the original image's coordinates, as predictions are reported.
        assert (gt.masks.height, gt.masks.width) == sample.ori_shape
        masks = gt.masks.to_tensor(torch.bool, 'cpu')
        pred = dict(
            bboxes=gt.bboxes.tensor,
            scores=torch.ones(len(gt)),
            labels=gt.labels,
            masks=masks)
        metric.process({}, [
            dict(
                img_id=sample.img_id,
                ori_shape=sample.ori_shape,
                pred_instances=pred)
        ])
    results = metric.evaluate(len(val))
    assert results['coco/bbox_mAP'] > 0.95, results
    assert results['coco/segm_mAP'] > 0.95, results


def test_ade_config_builds_dataset_and_scores_gt(ade_root):
    pytest.importorskip('mmseg')
    import torch
    from mmengine.registry import init_default_scope

    from mmseg.registry import DATASETS, METRICS
    init_default_scope('mmseg')
    cfg = _load_config(ADE_CONFIG)

    train = DATASETS.build(_with_root(cfg.train_dataloader.dataset, ade_root))
    assert len(train) == ADE_KW['num_train']
    assert train.metainfo['reduce_zero_label'] is True
    assert tuple(train.metainfo['classes']) == DEMO_ADE_CLASSES
    item = train[0]
    seg = item['data_samples'].gt_sem_seg.data
    assert tuple(seg.shape) == (1, ) + tuple(cfg.crop_size)
    assert tuple(item['inputs'].shape) == (3, ) + tuple(cfg.crop_size)
    values = set(torch.unique(seg).tolist())
    assert values <= {0, 1, 2, 3, 255}
    assert 255 in values or len(values) >= 2

    # Labels given as predictions: mIoU 100 over the 4 classes, with the
    # unlabeled band ignored.
    val = DATASETS.build(_with_root(cfg.val_dataloader.dataset, ade_root))
    metric = METRICS.build(cfg.val_evaluator)
    metric.dataset_meta = val.metainfo
    seen = set()
    for i in range(len(val)):
        sample = val[i]['data_samples']
        gt = sample.gt_sem_seg.data
        assert tuple(gt.shape) == (1, ) + tuple(ADE_KW['image_size'])
        seen |= set(torch.unique(gt).tolist())
        pred = torch.where(gt == 255, torch.zeros_like(gt), gt)
        metric.process({}, [
            dict(pred_sem_seg=dict(data=pred), gt_sem_seg=dict(data=gt))
        ])
    assert 255 in seen and seen <= {0, 1, 2, 3, 255}
    results = metric.evaluate(len(val))
    assert results['mIoU'] == pytest.approx(100.0), results


def test_cls_config_builds_dataset(cls_root):
    pytest.importorskip('mmpretrain')
    from mmengine.registry import init_default_scope

    from mmpretrain.registry import DATASETS
    init_default_scope('mmpretrain')
    cfg = _load_config(CLS_CONFIG)
    h, w = CLS_KW['image_size']
    for loader, num in ((cfg.train_dataloader, CLS_KW['num_train']),
                        (cfg.val_dataloader, CLS_KW['num_val'])):
        dataset = DATASETS.build(_with_root(loader.dataset, cls_root))
        assert len(dataset) == num * len(DEMO_CLS_CLASSES)
        assert tuple(dataset.metainfo['classes']) == DEMO_CLS_CLASSES
        labels = [dataset.get_data_info(i)['gt_label']
                  for i in range(len(dataset))]
        assert np.bincount(labels).tolist() == [num] * len(DEMO_CLS_CLASSES)
        for i in (0, len(dataset) - 1):
            info = dataset.get_data_info(i)
            # Label k is the folder of class k.
            folder = osp.basename(osp.dirname(info['img_path']))
            assert folder == DEMO_CLS_CLASSES[info['gt_label']]
            item = dataset[i]
            sample = item['data_samples']
            assert sample.gt_label.tolist() == [info['gt_label']]
            assert tuple(item['inputs'].shape) == (3, h, w)
            assert sample.ori_shape == (h, w)
