# Copyright (c) mmscalable contributors. All rights reserved.
"""Predict on images with an mmscalable detection or segmentation config and
write the pictures: boxes and masks (mmdet) or the colour-coded classes
(mmseg), through the libraries' own inferencers.

Examples::

    # Instance segmentation (boxes and masks) with a Mask R-CNN:
    python demo/image_demo.py demo.jpg \\
        configs/scalablevit/mask-rcnn_scalablevit-s_fpn_1x_coco.py \\
        --weights mask-rcnn_scalablevit-s.pth --out-dir outputs
    # Boxes only:
    python demo/image_demo.py demo.jpg CONFIG --weights CKPT --boxes-only
    # Semantic segmentation with an UperNet:
    python demo/image_demo.py demo.jpg \\
        configs/scalablevit/upernet_scalablevit-s_8xb2-160k_ade20k-512x512.py \\
        --weights upernet_scalablevit-s.pth

The pictures are written to ``OUT_DIR/vis/<image name>``.
"""
import argparse
import os
import os.path as osp
from typing import List

import torch
from mmengine.config import Config

import mmscalable  # noqa: F401  (checkpoint loaders for torch >= 2.6)
from mmscalable.compat import quiet_third_party_deprecations

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.webp')


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('inputs', help='an image file or a folder of images')
    parser.add_argument('config', help='an mmdet or mmseg config')
    parser.add_argument('--weights', help='the checkpoint of the model')
    parser.add_argument(
        '--out-dir', default='outputs', help='where the pictures go')
    parser.add_argument(
        '--device',
        default='cuda' if torch.cuda.is_available() else 'cpu',
        help='device to run on')
    parser.add_argument(
        '--score-thr',
        type=float,
        default=0.3,
        help='detections below this score are not drawn (mmdet)')
    parser.add_argument(
        '--boxes-only',
        action='store_true',
        help='draw the boxes of an instance segmentation model, no masks')
    parser.add_argument(
        '--opacity',
        type=float,
        default=0.5,
        help='opacity of the painted classes (mmseg)')
    return parser.parse_args()


def list_images(inputs: str) -> List[str]:
    if osp.isdir(inputs):
        images = sorted(
            osp.join(inputs, name) for name in os.listdir(inputs)
            if name.lower().endswith(IMAGE_EXTENSIONS))
        if not images:
            raise FileNotFoundError(f'no images in the folder {inputs}')
        return images
    if not osp.isfile(inputs):
        raise FileNotFoundError(f'image {inputs} not found')
    return [inputs]


def detect(args, images: List[str]) -> None:
    from mmdet.apis import DetInferencer
    inferencer = DetInferencer(
        model=args.config,
        weights=args.weights,
        device=args.device,
        show_progress=False)
    results = inferencer(
        images,
        pred_score_thr=args.score_thr,
        no_save_vis=True,
        return_datasamples=True)
    samples = results['predictions']
    if args.boxes_only:
        for sample in samples:
            if 'masks' in sample.pred_instances:
                del sample.pred_instances.masks
    inferencer.visualize(
        images,
        samples,
        pred_score_thr=args.score_thr,
        img_out_dir=args.out_dir)


def segment(args, images: List[str]) -> None:
    from mmseg.apis import MMSegInferencer
    inferencer = MMSegInferencer(
        model=args.config, weights=args.weights, device=args.device)
    inferencer(images, out_dir=args.out_dir, opacity=args.opacity)


def main():
    args = parse_args()
    images = list_images(args.inputs)
    if args.weights is not None and not osp.isfile(args.weights):
        raise FileNotFoundError(f'checkpoint {args.weights} not found')
    scope = Config.fromfile(args.config).get('default_scope')
    if scope == 'mmdet':
        detect(args, images)
    elif scope == 'mmseg':
        if args.boxes_only:
            raise ValueError('--boxes-only is for detection configs')
        segment(args, images)
    else:
        raise ValueError(
            f'{args.config} is a {scope} config; image_demo.py draws mmdet '
            '(detection, instance segmentation) and mmseg (semantic '
            'segmentation) predictions')
    for image in images:
        print(osp.join(args.out_dir, 'vis', osp.basename(image)))


if __name__ == '__main__':
    quiet_third_party_deprecations()
    main()
