"""Every config in configs/ builds its model; configs inherit across folders."""
import glob
import os
import os.path as osp
import re
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
# Dense configs of each family (Refiner: Mask R-CNN 1x and UperNet only;
# the paper published no dense recipe at all).
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
        assert 'refiner-vit-l_8xb64_in1k-448px.py' in names


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


REFINER_DENSE_CONFIGS = sorted(
    p for p in CONFIGS if p.startswith('configs/refiner/')
    and not osp.basename(p).startswith('refiner-vit'))


@pytest.mark.parametrize('config', REFINER_DENSE_CONFIGS)
def test_refiner_dense_recipes(config):
    """What the Refiner dense configs promise: pretrained S/M/L backbones
    with frozen map BatchNorm and stride-16 outputs of refiner blocks, the
    mmseg ViT UperNet recipe or ViTDet's simple feature pyramid."""
    cfg = Config.fromfile(osp.join(ROOT, config))
    arch = osp.basename(config).split('refiner-vit-')[1][0]
    dims = FAMILIES['refiner'][1][arch]
    depth = dict(s=16, m=32, l=32)[arch]
    backbone = cfg.model.backbone
    assert backbone.type == 'mmscalable.RefinerViT'
    assert backbone.arch == arch
    assert backbone.drop_path_rate == dict(s=0.1, m=0.2, l=0.2)[arch]
    assert backbone.out_type == 'featmap' and backbone.norm_eval
    assert backbone.init_cfg == dict(
        type='Pretrained',
        checkpoint=f'checkpoints/refiner-vit-{arch}_in1k.pth',
        prefix='backbone.')
    # Outputs of refiner blocks (odd indices), the last one last.
    assert all(i % 2 == 1 for i in backbone.out_indices)
    assert backbone.out_indices[-1] == depth - 1
    assert cfg.model.data_preprocessor.mean == [127.5] * 3
    assert cfg.model.data_preprocessor.std == [127.5] * 3
    paramwise = cfg.optim_wrapper.paramwise_cfg
    assert paramwise.norm_decay_mult == 0
    assert paramwise.custom_keys == dict(
        pos_embed=dict(decay_mult=0.), cls_token=dict(decay_mult=0.))
    optimizer = cfg.optim_wrapper.optimizer
    assert optimizer.type == 'AdamW'
    if osp.basename(config).startswith('upernet'):
        assert backbone.out_indices == tuple(
            range(depth // 4 - 1, depth, depth // 4))
        assert backbone.img_size == (512, 512)
        # The default budget would keep the maps whole at 512x512 (36 x
        # 1025^2 float32 values per head group).
        assert backbone.get('attn_impl', 'fast') == 'fast'
        assert backbone.attn_memory_budget < 36 * 1025**2 * 4
        neck = cfg.model.neck
        assert neck.type == 'MultiLevelNeck'
        assert neck.in_channels == [dims] * 4
        assert neck.scales == [4, 2, 1, 0.5]
        assert cfg.model.decode_head.in_channels == [neck.out_channels] * 4
        assert cfg.model.auxiliary_head.in_channels == neck.out_channels
        assert (optimizer.lr, optimizer.weight_decay) == (6e-5, 0.01)
        assert cfg.train_cfg.max_iters == 160000
    else:
        assert backbone.out_indices == (depth - 1, )
        # Chunked at 800x1333.
        assert backbone.get('attn_impl', 'fast') == 'fast'
        neck = cfg.model.neck
        assert neck.type == 'mmscalable.SimpleFeaturePyramid'
        assert (neck.in_channels, neck.out_channels, neck.num_outs) == (dims,
                                                                        256, 5)
        assert cfg.model.data_preprocessor.pad_size_divisor == 32
        assert (optimizer.lr, optimizer.weight_decay) == (1e-4, 0.1)
        assert cfg.optim_wrapper.clip_grad.max_norm > 0
        assert cfg.train_cfg.max_epochs == 12


@pytest.mark.parametrize('config', [
    'configs/refiner/upernet_refiner-vit-s_8xb2-160k_ade20k-512x512.py',
    'configs/refiner/mask-rcnn_refiner-vit-s_fpn_1x_coco.py'
])
def test_refiner_dense_weight_decay(config):
    """The built optimizer decays weights but not the position embedding,
    class token or any norm (LN, map BatchNorm, the neck's LN2d)."""
    from mmengine.optim import build_optim_wrapper
    cfg = Config.fromfile(osp.join(ROOT, config))
    cfg.model.backbone.update(
        arch=dict(embed_dims=32, depth=4, num_heads=4),
        out_indices=(3, ),
        init_cfg=None)
    if cfg.model.neck.type == 'MultiLevelNeck':
        cfg.model.backbone.out_indices = (0, 1, 2, 3)
        cfg.model.neck.update(in_channels=[32] * 4, out_channels=32)
        cfg.model.decode_head.in_channels = [32] * 4
        cfg.model.auxiliary_head.in_channels = 32
    else:
        cfg.model.neck.in_channels = 32
    model = build_model(cfg)
    optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    wd = cfg.optim_wrapper.optimizer.weight_decay
    decay = {}
    for group in optim_wrapper.optimizer.param_groups:
        for p in group['params']:
            decay[p] = group['weight_decay']
    backbone = model.backbone
    for p in (backbone.pos_embed, backbone.cls_token, backbone.norm.weight,
              backbone.blocks[0].norm1.weight,
              backbone.blocks[1].attn.refined_norm.weight,
              backbone.stem[0].bn.weight):
        assert decay[p] == 0
    assert decay[backbone.blocks[0].attn.qkv.weight] == wd
    assert decay[backbone.patch_projection.weight] == wd
    if cfg.model.neck.type == 'mmscalable.SimpleFeaturePyramid':
        assert decay[model.neck.outputs[0][0].norm.weight] == 0
        assert decay[model.neck.outputs[0][0].conv.weight] == wd


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


@pytest.mark.parametrize(
    'config', [c for c in CONFIGS if not c.startswith('configs/demo')])
def test_auto_scale_lr_has_the_recipe_batch(config):
    """``NxbM`` in a name is N GPUs x M images: the base batch of
    ``--auto-scale-lr``; detection configs (no such part) are 8 x 2."""
    cfg = Config.fromfile(osp.join(ROOT, config))
    per_gpu = cfg.train_dataloader.batch_size
    match = re.search(r'_(\d+)xb(\d+)', osp.basename(config))
    if match:
        gpus, images = map(int, match.groups())
        assert images == per_gpu, (config, per_gpu)
    else:
        gpus = 8
    assert cfg.auto_scale_lr.base_batch_size == gpus * per_gpu
