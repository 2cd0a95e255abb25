# Copyright (c) mmscalable contributors. All rights reserved.
"""Convert an official Refiner-ViT checkpoint to an mmpretrain classifier's.

The official checkpoints (zhoudaquan/Refiner_ViT, saved by timm's
``CheckpointSaver``: the weights under ``state_dict``, their EMA under
``state_dict_ema``) become a checkpoint of the whole mmpretrain
``ImageClassifier`` of ``configs/refiner/refiner-vit-{s,m,l}_8xb128_in1k.py``
(keys ``backbone.*`` and ``head.*``, the auxiliary token head as
``head.aux_fc``). The weights are taken from ``state_dict`` (from
``state_dict_ema`` when a checkpoint has only that); ``--ema`` takes the EMA
weights. Detection and segmentation configs load the backbone with
``init_cfg=dict(type='Pretrained', checkpoint=..., prefix='backbone.')``;
a position embedding made for another grid is resized when it is loaded.

Example:
    python tools/model_converters/refiner2mmscalable.py \\
        Refiner_ViT_L_448.pth.tar checkpoints/refiner-vit-l_in1k-448px.pth
"""
import argparse
from typing import Optional, Sequence

from mmscalable.models.checkpoint import (convert_official_checkpoint,
                                          is_official_refiner,
                                          refiner_official_to_mmcls)

EMA_KEY = 'state_dict_ema'


def convert(src: str, dst: str, ema: bool = False) -> dict:
    """Convert ``src`` into ``dst`` and return the converted weights.

    Args:
        src (str): Official checkpoint.
        dst (str): Output path.
        ema (bool): Convert the EMA weights (``state_dict_ema``) instead of
            ``state_dict``. Defaults to False.
    """
    return convert_official_checkpoint(
        src,
        dst,
        family='Refiner-ViT',
        is_official=is_official_refiner,
        to_mmcls=refiner_official_to_mmcls,
        marker='patch_embed.conv1.*',
        converter='refiner2mmscalable',
        container=EMA_KEY if ema else None)


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(
        description='Convert an official Refiner-ViT checkpoint to the keys '
        'of an mmpretrain classifier with a mmscalable backbone.')
    parser.add_argument('src', help='official checkpoint path')
    parser.add_argument('dst', help='output path')
    parser.add_argument(
        '--ema',
        action='store_true',
        help=f'convert the EMA weights (`{EMA_KEY}`) instead of '
        '`state_dict`')
    args = parser.parse_args(argv)
    converted = convert(args.src, args.dst, ema=args.ema)
    weights = f' ({EMA_KEY})' if args.ema else ''
    print(f'Converted {len(converted)} tensors{weights} from {args.src} to '
          f'{args.dst}')


if __name__ == '__main__':
    main()
