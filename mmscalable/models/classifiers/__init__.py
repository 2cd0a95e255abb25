# Copyright (c) mmscalable contributors. All rights reserved.
from .refiner_classifier import RefinerClassifier, attention_map_similarity

__all__ = ['RefinerClassifier', 'attention_map_similarity']
