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
import sys
import tempfile
from typing import List

sys.path.append(
    osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), 'tools'))
import env_check  # noqa: E402,F401  (first: names a missing package)
import torch  # noqa: E402
from mmengine.config import Config  # noqa: E402

import mmscalable  # noqa: E402,F401  (checkpoint loaders for torch >= 2.6)
from mmscalable.compat import (  # noqa: E402
    quiet_third_party_deprecations, safe_torch_load)
from mmscalable.engine.hooks import check_checkpoint_fits  # noqa: E402

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.webp')


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('inputs', help='an image file or a folder of images')
    parser.add_argument('config', help='an mmdet or mmseg config')
    parser.add_argument('--weights', help='the checkpoint of the model')
    parser.add_argument(
        '--untrained',
        action='store_true',
        help='draw the predictions of random weights (without --weights)')
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
    args = parser.parse_args()
    if args.weights is None and not args.untrained:
        parser.error('give the model\'s checkpoint with --weights CKPT (or '
                     '--untrained for the predictions of random weights)')
    if args.weights is not None and args.untrained:
        parser.error('--untrained and --weights exclude each other')
    return args


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


def as_color_images(images: List[str], folder: str) -> List[str]:
    """The images, with those that are not 3-channel (grayscale, with
    alpha) written to ``folder`` as colour images of the same name: the
    models take 3 channels, and the inferencers draw on the image they
    read."""
    import mmcv
    converted = []
    for image in images:
        pixels = mmcv.imread(image, flag='unchanged')
        if pixels is None:
            raise ValueError(f'{image} is not an image that can be read')
        if pixels.ndim == 3 and pixels.shape[2] == 3:
            converted.append(image)
            continue
        channels = 1 if pixels.ndim == 2 else pixels.shape[2]
        print(f'{image}: {channels} channel(s), converted to 3')
        path = osp.join(folder, osp.basename(image))
        mmcv.imwrite(mmcv.imread(image, flag='color'), path)
        converted.append(path)
    return converted


def check_weights(cfg: Config, weights: str) -> None:
    """Refuse a checkpoint of another model, as ``tools/test.py`` does,
    before the inferencer loads it with a warning per missing key."""
    from mmengine.registry import MODELS, init_default_scope

    import mmscalable.models  # noqa: F401  (registers the backbones)
    init_default_scope(cfg.get('default_scope'))
    model_cfg = cfg.model.copy()
    model_cfg.backbone = dict(model_cfg.backbone, init_cfg=None)
    check_checkpoint_fits(
        MODELS.build(model_cfg), safe_torch_load(weights, map_location='cpu'),
        weights)


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
    cfg = Config.fromfile(args.config)
    scope = cfg.get('default_scope')
    if scope not in ('mmdet', 'mmseg'):
        raise ValueError(
            f'{args.config} is a {scope} config; image_demo.py draws mmdet '
            '(detection, instance segmentation) and mmseg (semantic '
            'segmentation) predictions')
    if scope == 'mmseg' and args.boxes_only:
        raise ValueError('--boxes-only is for detection configs')
    if args.weights is not None:
        check_weights(cfg, args.weights)
    else:
        print('--untrained: the pictures show the predictions of random '
              'weights')
    with tempfile.TemporaryDirectory() as folder:
        inputs = as_color_images(images, folder)
        if scope == 'mmdet':
            detect(args, inputs)
        else:
            segment(args, inputs)
    for image in images:
        print(osp.join(args.out_dir, 'vis', osp.basename(image)))


if __name__ == '__main__':
    quiet_third_party_deprecations()
    main()
