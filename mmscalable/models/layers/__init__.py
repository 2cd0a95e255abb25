# Copyright (c) mmscalable contributors. All rights reserved.
from .conv_position_encoding import (ConvPositionEncoding, map_to_tokens,
                                     tokens_to_map)
from .ffn_branch import ffn_eval_branch
from .group_mix_attention import GroupMixAttention
from .refined_attention import AttentionMapRefinement, RefinedAttention
from .scalable_attention import (InteractiveWindowAttention,
                                 ScalableSelfAttention)

__all__ = [
    'ConvPositionEncoding', 'map_to_tokens', 'tokens_to_map',
    'ffn_eval_branch', 'GroupMixAttention', 'AttentionMapRefinement', 'RefinedAttention',
    'ScalableSelfAttention', 'InteractiveWindowAttention'
]
