"""Every config in configs/ builds its model; configs inherit across folders."""
import glob
import os
import os.path as osp
import textwrap

import pytest
from mmengine.config import Config
from mmengine.registry import init_default_scope

import mmscalable  # noqa: F401  (registers the mmscalable:: config prefix)

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIGS = sorted(
    osp.relpath(p, ROOT)
    for p in glob.glob(osp.join(ROOT, 'configs', '**', '*.py'), recursive=True)
    if '_base_' not in p)


def build_model(cfg):
    scope = cfg.get('default_scope', 'mmengine')
    init_default_scope(scope)
    if scope == 'mmdet':
        from mmdet.registry import MODELS
    elif scope == 'mmseg':
        from mmseg.registry import MODELS
    elif scope == 'mmpretrain':
        from mmpretrain.registry import MODELS
    else:
        raise AssertionError(f'{cfg.filename}: unexpected scope {scope}')
    return MODELS.build(cfg.model)


def test_there_are_configs_for_every_task_and_variant():
    names = {osp.basename(p) for p in CONFIGS}
    for v in 'sbl':
        for pattern in ('mask-rcnn_scalablevit-{}_fpn_1x_coco.py',
                        'mask-rcnn_scalablevit-{}_fpn_ms-crop-3x_coco.py',
                        'retinanet_scalablevit-{}_fpn_1x_coco.py',
                        'upernet_scalablevit-{}_8xb2-160k_ade20k-512x512.py',
                        'fpn_scalablevit-{}_4xb4-80k_ade20k-512x512.py',
                        'scalablevit-{}_8xb128_in1k.py'):
            assert pattern.format(v) in names


@pytest.mark.parametrize('config', CONFIGS)
def test_config_builds_its_model(config):
    cfg = Config.fromfile(osp.join(ROOT, config))
    assert cfg.custom_imports == dict(
        imports=['mmscalable.models'], allow_failed_imports=False)
    model = build_model(cfg)
    backbone = model.backbone
    assert type(backbone).__name__ == 'ScalableViT'
    arch = osp.basename(config).split('scalablevit-')[1][0]
    if arch in 'sbl':
        expected = {'s': 64, 'b': 96, 'l': 128}[arch]
        assert backbone.embed_dims[0] == expected


def test_inherit_through_package_prefix(tmp_path):
    """A lab's config in another folder inherits ours with mmscalable::."""
    user_cfg = tmp_path / 'my_mask_rcnn.py'
    user_cfg.write_text(textwrap.dedent("""
        _base_ = ['mmscalable::scalablevit/mask-rcnn_scalablevit-s_fpn_1x_coco.py']
        model = dict(backbone=dict(drop_path_rate=0.3))
        """))
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        cfg = Config.fromfile(str(user_cfg))
    finally:
        os.chdir(cwd)
    assert cfg.model.backbone.type == 'mmscalable.ScalableViT'
    assert cfg.model.backbone.drop_path_rate == 0.3
    assert cfg.model.neck.in_channels == [64, 128, 256, 512]
    assert cfg.optim_wrapper.optimizer.type == 'AdamW'
