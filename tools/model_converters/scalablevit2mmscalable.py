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
from mmscalable.models.checkpoint import (convert_official_checkpoint,
                                          is_official_scalablevit,
                                          run_converter_cli,
                                          scalablevit_official_to_mmcls)


def convert(src: str, dst: str) -> dict:
    """Convert ``src`` into ``dst`` and return the converted weights."""
    return convert_official_checkpoint(
        src,
        dst,
        family='ScalableViT',
        is_official=is_official_scalablevit,
        to_mmcls=scalablevit_official_to_mmcls,
        marker='patch_embeds.*',
        converter='scalablevit2mmscalable')


if __name__ == '__main__':
    run_converter_cli('ScalableViT', convert)
