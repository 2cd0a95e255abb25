# Copyright (c) mmscalable contributors. All rights reserved.
from .scalable_attention import (InteractiveWindowAttention,
                                 ScalableSelfAttention)

__all__ = ['ScalableSelfAttention', 'InteractiveWindowAttention']
