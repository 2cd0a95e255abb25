# Copyright (c) mmscalable contributors. All rights reserved.
"""Convert an official ScalableViT checkpoint to an mmpretrain classifier's.

The official checkpoints (Yangr116/ScalableViT, ``{'model': state_dict}``)
become a checkpoint of the whole mmpretrain ``ImageClassifier`` of
``configs/scalablevit/scalablevit-{s,b,l}_8xb128_in1k.py`` (keys
``backbone.*`` and ``head.*``). Detection and segmentation configs load its
backbone with ``init_cfg=dict(type='Pretrained', checkpoint=...,
prefix='backbone.')``.

Example:
    python tools/model_converters/scalablevit2mmscalable.py \\
        scalable_vit_small.pth checkpoints/scalablevit-s_in1k.pth
"""
import argparse
import os
import os.path as osp

import torch

from mmscalable.models.utils import (is_official_scalablevit,
                                     scalablevit_official_to_mmcls,
                                     unwrap_state_dict)
from mmscalable.utils.checkpoint import safe_torch_load


def convert(src: str, dst: str) -> dict:
    """Convert ``src`` into ``dst`` and return the converted weights."""
    checkpoint = safe_torch_load(src, map_location='cpu')
    state_dict = unwrap_state_dict(checkpoint, src)
    if not is_official_scalablevit(state_dict):
        raise ValueError(
            f'{src} is not an official ScalableViT checkpoint: it has no '
            f'`patch_embeds.*` keys (first keys: {list(state_dict)[:5]})')
    converted = scalablevit_official_to_mmcls(state_dict)
    os.makedirs(osp.dirname(osp.abspath(dst)), exist_ok=True)
    torch.save(
        dict(
            state_dict=converted,
            meta=dict(converted_from=osp.basename(src),
                      converter='scalablevit2mmscalable')), dst)
    return converted


def main():
    parser = argparse.ArgumentParser(
        description='Convert an official ScalableViT checkpoint to the '
        'keys of an mmpretrain classifier with a mmscalable backbone.')
    parser.add_argument('src', help='official checkpoint path')
    parser.add_argument('dst', help='output path')
    args = parser.parse_args()
    converted = convert(args.src, args.dst)
    print(f'Converted {len(converted)} tensors from {args.src} to {args.dst}')


if __name__ == '__main__':
    main()
