# Copyright (c) mmscalable contributors. All rights reserved.
from .conv_position_encoding import (ConvPositionEncoding, map_to_tokens,
                                     tokens_to_map)
from .group_mix_attention import GroupMixAttention
from .refined_attention import AttentionMapRefinement, RefinedAttention
from .scalable_attention import (InteractiveWindowAttention,
                                 ScalableSelfAttention)

__all__ = [
    'ConvPositionEncoding', 'map_to_tokens', 'tokens_to_map',
    'GroupMixAttention', 'AttentionMapRefinement', 'RefinedAttention',
    'ScalableSelfAttention', 'InteractiveWindowAttention'
]
