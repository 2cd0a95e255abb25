# Copyright (c) mmscalable contributors. All rights reserved.
"""Convert an official GroupMixFormer checkpoint to an mmpretrain classifier's.

The official checkpoints (AILab-CVC/GroupMixFormer, ``{'model': state_dict}``)
become a checkpoint of the whole mmpretrain ``ImageClassifier`` of
``configs/groupmixformer/groupmixformer-{m,t,s,b,l}_8xb128_in1k.py`` (keys
``backbone.*`` and ``head.*``). Detection and segmentation configs load its
backbone with ``init_cfg=dict(type='Pretrained', checkpoint=...,
prefix='backbone.')``.

Example:
    python tools/model_converters/groupmixformer2mmscalable.py \\
        groupmixformer_small.pth checkpoints/groupmixformer-s_in1k.pth
"""
from mmscalable.models.checkpoint import (convert_official_checkpoint,
                                          groupmixformer_official_to_mmcls,
                                          is_official_groupmixformer,
                                          run_converter_cli)


def convert(src: str, dst: str) -> dict:
    """Convert ``src`` into ``dst`` and return the converted weights."""
    return convert_official_checkpoint(
        src,
        dst,
        family='GroupMixFormer',
        is_official=is_official_groupmixformer,
        to_mmcls=groupmixformer_official_to_mmcls,
        marker='conv_stem.*',
        converter='groupmixformer2mmscalable')


if __name__ == '__main__':
    run_converter_cli('GroupMixFormer', convert)
