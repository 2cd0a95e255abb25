# Copyright (c) mmscalable contributors. All rights reserved.
"""Draw the ground truth of a config's dataset after its pipeline.

Works for the mmdet (boxes, masks), mmseg (colour-coded classes) and
mmpretrain (label) configs, the embedded demo sets (``--make-demo-data``
generates them first) and real ones. The pictures show what the model is
fed: augmentations of the train pipeline included (``--split val`` for the
test pipeline).

Example::

    python tools/analysis_tools/browse_dataset.py \\
        configs/demo/mask-rcnn_scalablevit-tiny_fpn_demo-coco.py \\
        --output-dir browse --show-number 8 --make-demo-data
"""
import argparse
import os
import os.path as osp
import sys

sys.path.append(osp.dirname(osp.dirname(osp.abspath(__file__))))  # tools/
import env_check  # noqa: E402,F401  (first: names a missing package)
import numpy as np  # noqa: E402
from mmengine.config import Config, DictAction  # noqa: E402

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(
    osp.abspath(__file__)))))

import mmscalable  # noqa: E402,F401
from mmscalable.compat import quiet_third_party_deprecations  # noqa: E402
from mmscalable.engine import preflight  # noqa: E402
from mmscalable.engine.runner import make_config_demo_data  # noqa: E402


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('config', help='config file')
    parser.add_argument(
        '--output-dir', default='browse_dataset', help='pictures go here')
    parser.add_argument(
        '--split',
        choices=['train', 'val', 'test'],
        default='train',
        help='the dataloader whose dataset is drawn')
    parser.add_argument(
        '--show-number',
        type=int,
        default=10,
        help='how many samples to draw')
    parser.add_argument(
        '--make-demo-data',
        action='store_true',
        help='first generate the embedded demo data the config reads '
        '(data/demo_*), unless it is up to date')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override settings of the config, key=value')
    return parser.parse_args()


def _image(inputs) -> np.ndarray:
    # Packed inputs are (C, H, W) BGR; the visualizers draw on RGB.
    return np.ascontiguousarray(inputs.permute(1, 2, 0).numpy()[..., ::-1])


def _detection_ground_truth(sample):
    from mmdet.structures.bbox import BaseBoxes
    from mmdet.structures.mask import BitmapMasks, PolygonMasks
    gt = sample.gt_instances
    if isinstance(gt.get('bboxes'), BaseBoxes):
        gt.bboxes = gt.bboxes.tensor
    masks = gt.get('masks')
    if isinstance(masks, (BitmapMasks, PolygonMasks)):
        gt.masks = masks.to_ndarray().astype(bool)
    return sample


def browse(cfg: Config, split: str, output_dir: str, number: int) -> list:
    """Write ``number`` pictures of ``split``; returns their paths."""
    from mmengine.registry import DATASETS, VISUALIZERS, init_default_scope
    scope = cfg.get('default_scope')
    if scope not in ('mmdet', 'mmseg', 'mmpretrain'):
        raise ValueError(f'cannot browse the dataset of a {scope} config')
    init_default_scope(scope)
    for name, dataset in preflight.config_datasets(cfg):
        if name == f'{split}_dataloader':
            preflight.check_demo_data(name, dataset)
    dataset = DATASETS.build(cfg[f'{split}_dataloader'].dataset)
    # A name of its own: the visualizers are per-name singletons.
    visualizer = VISUALIZERS.build(
        dict(cfg.visualizer, name=f'browse_dataset_{scope}'))
    visualizer.dataset_meta = dataset.metainfo
    os.makedirs(output_dir, exist_ok=True)
    written = []
    for index in range(min(number, len(dataset))):
        item = dataset[index]
        sample = item['data_samples']
        image = _image(item['inputs'])
        name = osp.splitext(osp.basename(sample.img_path))[0]
        out_file = osp.join(output_dir, f'{index:04d}_{name}.png')
        if scope == 'mmpretrain':
            visualizer.visualize_cls(
                image,
                sample,
                classes=dataset.metainfo.get('classes'),
                draw_pred=False,
                out_file=out_file)
        else:
            if scope == 'mmdet':
                sample = _detection_ground_truth(sample)
            visualizer.add_datasample(
                name, image, sample, draw_pred=False, out_file=out_file)
        written.append(out_file)
    return written


def main():
    args = parse_args()
    cfg = Config.fromfile(args.config)
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    if args.make_demo_data:
        make_config_demo_data(cfg)
    for path in browse(cfg, args.split, args.output_dir, args.show_number):
        print(path)


if __name__ == '__main__':
    quiet_third_party_deprecations()
    main()
