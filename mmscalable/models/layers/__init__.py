# Copyright (c) mmscalable contributors. All rights reserved.
from .conv_position_encoding import (ConvPositionEncoding, map_to_tokens,
                                     tokens_to_map)
from .group_mix_attention import GroupMixAttention
from .scalable_attention import (InteractiveWindowAttention,
                                 ScalableSelfAttention)

__all__ = [
    'ConvPositionEncoding', 'map_to_tokens', 'tokens_to_map',
    'GroupMixAttention', 'ScalableSelfAttention', 'InteractiveWindowAttention'
]
