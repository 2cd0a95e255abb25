# Copyright (c) mmscalable contributors. All rights reserved.
"""Official checkpoints: key conversion, file conversion and pretrained
loading (each family's entry in :mod:`mmscalable.models.families` names
its own)."""
from .key_rules import (GROUPMIXFORMER_KEY_RULES, REFINER_KEY_RULES,
                        SCALABLEVIT_KEY_RULES, convert_keys,
                        groupmixformer_mmcls_to_official,
                        groupmixformer_official_to_mmcls,
                        is_official_groupmixformer, is_official_refiner,
                        is_official_scalablevit, refiner_mmcls_to_official,
                        refiner_official_to_mmcls,
                        scalablevit_mmcls_to_official,
                        scalablevit_official_to_mmcls)
from .official import canonical_archs, convert_official_checkpoint
from .pretrained import (load_pretrained_backbone, unwrap_state_dict,
                         weights_container)

__all__ = [
    'GROUPMIXFORMER_KEY_RULES', 'REFINER_KEY_RULES', 'SCALABLEVIT_KEY_RULES',
    'convert_keys', 'is_official_refiner', 'refiner_mmcls_to_official',
    'refiner_official_to_mmcls',
    'groupmixformer_mmcls_to_official', 'groupmixformer_official_to_mmcls',
    'is_official_groupmixformer', 'is_official_scalablevit',
    'scalablevit_mmcls_to_official', 'scalablevit_official_to_mmcls',
    'convert_official_checkpoint', 'load_pretrained_backbone',
    'canonical_archs',
    'unwrap_state_dict', 'weights_container'
]
