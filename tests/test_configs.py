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
    osp.relpath(p, ROOT) for p in glob.glob(
        osp.join(ROOT, 'configs', '**', '*.py'), recursive=True)
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


FAMILIES = {
    # folder: (backbone class, {variant: first-stage channels})
    'scalablevit': ('ScalableViT', dict(s=64, b=96, l=128)),
    'groupmixformer': ('GroupMixFormer', dict(m=40, t=80, s=80, b=200, l=240)),
    'refiner': ('RefinerViT', dict(s=384, m=420, l=512)),
}
# Dense configs of each family (Refiner: Mask R-CNN 1x and UperNet, as the
# issue asks; the paper published no dense recipe at all).
DENSE_PATTERNS = dict(
    scalablevit=('mask-rcnn_{}-{}_fpn_1x_coco.py',
                 'mask-rcnn_{}-{}_fpn_ms-crop-3x_coco.py',
                 'retinanet_{}-{}_fpn_1x_coco.py',
                 'upernet_{}-{}_8xb2-160k_ade20k-512x512.py',
                 'fpn_{}-{}_4xb4-80k_ade20k-512x512.py'),
    refiner=('mask-rcnn_{}-{}_fpn_1x_coco.py',
             'upernet_{}-{}_8xb2-160k_ade20k-512x512.py'))
DENSE_PATTERNS['groupmixformer'] = DENSE_PATTERNS['scalablevit']


@pytest.mark.parametrize('family', sorted(FAMILIES))
def test_there_are_configs_for_every_task_and_variant(family):
    names = {osp.basename(p) for p in CONFIGS}
    variants = FAMILIES[family][1]
    prefix = 'refiner-vit' if family == 'refiner' else family
    for v in variants:
        assert f'{prefix}-{v}_8xb128_in1k.py' in names
        # GroupMixFormer-M is a classification model only.
        if family == 'groupmixformer' and v == 'm':
            continue
        for pattern in DENSE_PATTERNS[family]:
            assert pattern.format(prefix, v) in names
    if family == 'groupmixformer':
        assert 'groupmixformer-l_8xb128_in1k-384px.py' in names
    if family == 'refiner':
        assert 'refiner-vit-l_8xb128_in1k-448px.py' in names


@pytest.mark.parametrize('config', CONFIGS)
def test_config_builds_its_model(config):
    cfg = Config.fromfile(osp.join(ROOT, config))
    assert cfg.custom_imports == dict(
        imports=['mmscalable.models'], allow_failed_imports=False)
    model = build_model(cfg)
    backbone = model.backbone
    family = osp.basename(osp.dirname(config))
    if family == 'demo':
        assert type(backbone).__name__ in {
            name
            for name, _ in FAMILIES.values()
        }
        return
    class_name, variants = FAMILIES[family]
    assert type(backbone).__name__ == class_name
    prefix = 'refiner-vit' if family == 'refiner' else family
    arch = osp.basename(config).split(f'{prefix}-')[1][0]
    dims = backbone.embed_dims
    assert (dims if isinstance(dims, int) else dims[0]) == variants[arch]


def test_inherit_through_package_prefix(tmp_path):
    """A lab's config in another folder inherits ours with mmscalable::."""
    user_cfg = tmp_path / 'my_mask_rcnn.py'
    user_cfg.write_text(
        textwrap.dedent("""
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


def test_model_index_names_existing_configs():
    import yaml
    with open(osp.join(ROOT, 'model-index.yml')) as f:
        index = yaml.safe_load(f)
    for metafile in index['Import']:
        with open(osp.join(ROOT, metafile)) as f:
            meta = yaml.safe_load(f)
        collections = {c['Name'] for c in meta['Collections']}
        for model in meta['Models']:
            assert model['In Collection'] in collections
            assert osp.isfile(osp.join(ROOT, model['Config'])), model['Config']
            assert osp.splitext(osp.basename(
                model['Config']))[0] == model['Name']
            assert model['Results']
