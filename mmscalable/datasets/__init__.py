# Copyright (c) mmscalable contributors. All rights reserved.
"""Datasets of mmscalable: the embedded, generated demo data.

The demo sets use the task libraries' own dataset classes (mmdet's
``CocoDataset``, mmseg's ``BaseSegDataset``, mmpretrain's ``CustomDataset``),
so nothing is registered here and this package imports none of them.
"""
from .demo_data import (DEMO_ADE_CLASSES, DEMO_ADE_DEFAULTS, DEMO_ADE_DIR,
                        DEMO_ADE_PALETTE, DEMO_CLS_CLASSES, DEMO_CLS_DEFAULTS,
                        DEMO_CLS_DIR, DEMO_COCO_CLASSES, DEMO_COCO_DEFAULTS,
                        DEMO_COCO_DIR, DEMO_COCO_PALETTE, DEMO_DATA_VERSION,
                        DEMO_DIRS, DemoDataPaths, ensure_demo_data,
                        is_demo_data_up_to_date, make_demo_ade, make_demo_cls,
                        make_demo_coco)

__all__ = [
    'DEMO_ADE_CLASSES', 'DEMO_ADE_DEFAULTS', 'DEMO_ADE_DIR',
    'DEMO_ADE_PALETTE', 'DEMO_CLS_CLASSES', 'DEMO_CLS_DEFAULTS',
    'DEMO_CLS_DIR', 'DEMO_COCO_CLASSES', 'DEMO_COCO_DEFAULTS',
    'DEMO_COCO_DIR', 'DEMO_COCO_PALETTE', 'DEMO_DATA_VERSION', 'DEMO_DIRS',
    'DemoDataPaths', 'ensure_demo_data', 'is_demo_data_up_to_date',
    'make_demo_ade', 'make_demo_cls', 'make_demo_coco'
]
