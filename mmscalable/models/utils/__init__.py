# Copyright (c) mmscalable contributors. All rights reserved.
from .ckpt_convert import (SCALABLEVIT_KEY_RULES, convert_keys,
                           is_official_scalablevit,
                           scalablevit_mmcls_to_official,
                           scalablevit_official_to_mmcls)
from .pretrained import load_pretrained_backbone, unwrap_state_dict

__all__ = [
    'SCALABLEVIT_KEY_RULES', 'convert_keys', 'is_official_scalablevit',
    'scalablevit_mmcls_to_official', 'scalablevit_official_to_mmcls',
    'load_pretrained_backbone', 'unwrap_state_dict'
]
