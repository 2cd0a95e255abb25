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
from mmscalable.models.families import FAMILIES

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def _configs():
    """Every config of configs/ and of each family's config folder."""
    patterns = [osp.join(ROOT, 'configs', '**', '*.py')] + [
        osp.join(ROOT, family.configs, '*.py')
        for family in FAMILIES.values()
    ]
    paths = {
        osp.relpath(path, ROOT)
        for pattern in patterns for path in glob.glob(pattern, recursive=True)
    }
    return sorted(p for p in paths if '_base_' not in p)


CONFIGS = _configs()


def family_of_config(config):
    """The family whose config folder holds ``config``; None for another
    (the demo configs)."""
    folder = osp.dirname(osp.join(ROOT, config))
    return next((family for family in FAMILIES.values() if osp.samefile(
        folder, osp.join(ROOT, family.configs))), None)


def first_stage_channels(family):
    """{variant: channels of the first stage} of ``family``'s arch zoo."""
    zoo = family.backbone_class.arch_zoo
    channels = {}
    for arch in family.archs:
        dims = zoo[arch]['embed_dims']
        channels[arch] = dims if isinstance(dims, int) else dims[0]
    return channels


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


# The papers' variants and their first-stage channels.
PAPER_VARIANTS = {
    'scalablevit': dict(s=64, b=96, l=128),
    'groupmixformer': dict(m=40, t=80, s=80, b=200, l=240),
    'refiner': dict(s=384, m=420, l=512),
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


def test_the_papers_variants_are_the_arch_zoos():
    for name, variants in PAPER_VARIANTS.items():
        assert first_stage_channels(FAMILIES[name]) == variants


@pytest.mark.parametrize('family', list(FAMILIES))
def test_there_are_configs_for_every_task_and_variant(family):
    spec = FAMILIES[family]
    names = {
        osp.basename(p)
        for p in CONFIGS if family_of_config(p) is spec
    }
    prefix = spec.model_prefix
    for v in spec.archs:
        assert any(
            name.startswith(f'{prefix}-{v}_') and '_in1k' in name
            for name in names), f'no classification config of {prefix}-{v}'
        if family in PAPER_VARIANTS:
            assert f'{prefix}-{v}_8xb128_in1k.py' in names
        # GroupMixFormer-M is a classification model only.
        if family == 'groupmixformer' and v == 'm':
            continue
        for pattern in DENSE_PATTERNS.get(family, ()):
            assert pattern.format(prefix, v) in names
    if family == 'scalablevit':
        # The official README reports RetinaNet 3x for S and B.
        for v in 'sb':
            assert f'retinanet_scalablevit-{v}_fpn_ms-crop-3x_coco.py' in names
    if family == 'groupmixformer':
        assert 'groupmixformer-l_8xb128_in1k-384px.py' in names
    if family == 'refiner':
        assert 'refiner-vit-l_8xb64_in1k-448px.py' in names
        for v in spec.archs:
            assert f'refiner-vit-{v}_8xb32_in1k-384px.py' in names


@pytest.mark.parametrize('config', CONFIGS)
def test_config_builds_its_model(config):
    cfg = Config.fromfile(osp.join(ROOT, config))
    assert cfg.custom_imports == dict(
        imports=['mmscalable.models'], allow_failed_imports=False)
    model = build_model(cfg)
    backbone = model.backbone
    family = family_of_config(config)
    if family is None:
        assert type(backbone).__name__ in {
            f.backbone
            for f in FAMILIES.values()
        }
        return
    assert type(backbone).__name__ == family.backbone
    arch = osp.basename(config).split(f'{family.model_prefix}-')[1][0]
    dims = backbone.embed_dims
    assert (dims if isinstance(dims, int) else
            dims[0]) == first_stage_channels(family)[arch]
    # The metafile's parameters are those of the model the config builds
    # (the paper's figure is a note beside it).
    params = METAFILE_PARAMETERS.get(config)
    if params is not None:
        assert sum(p.numel() for p in model.parameters()) == params


@pytest.mark.parametrize(
    'config', [c for c in CONFIGS if c.startswith('configs/demo/')])
def test_demo_configs_use_their_familys_demo_arch(config):
    from mmscalable.models.families import family_of_backbone
    backbone = Config.fromfile(osp.join(ROOT, config)).model.backbone
    family = family_of_backbone(backbone.type)
    assert family is not None and family.demo_arch is not None, config
    assert backbone.arch == family.demo_arch


def _metafile_parameters():
    import yaml
    params = {}
    for path in glob.glob(osp.join(ROOT, 'configs', '*', 'metafile.yml')):
        with open(path) as f:
            for entry in yaml.safe_load(f)['Models']:
                params[entry['Config']] = entry['Metadata'].get('Parameters')
    return params


METAFILE_PARAMETERS = _metafile_parameters()


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
    dims = PAPER_VARIANTS['refiner'][arch]
    depth = dict(s=16, m=32, l=32)[arch]
    backbone = cfg.model.backbone
    assert backbone.type == 'mmscalable.RefinerViT'
    assert backbone.arch == arch
    assert backbone.drop_path_rate == dict(s=0.1, m=0.2, l=0.2)[arch]
    assert backbone.out_type == 'featmap' and backbone.norm_eval
    # L: the one released checkpoint, trained at 448 (28 x 28 patches),
    # whose position embedding a 224 grid would shrink.
    checkpoint = dict(l='refiner-vit-l_in1k-448px.pth').get(
        arch, f'refiner-vit-{arch}_in1k.pth')
    assert backbone.init_cfg == dict(
        type='Pretrained',
        checkpoint=f'checkpoints/{checkpoint}',
        prefix='backbone.')
    if cfg.model.type == 'MaskRCNN':
        assert backbone.get('img_size', 224) == dict(l=448).get(arch, 224)
    else:
        assert backbone.img_size == (512, 512)
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
        arch=dict(FAMILIES['refiner'].tiny_arch, embed_dims=32),
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


def _cfg(path):
    return Config.fromfile(osp.join(ROOT, path))


@pytest.mark.parametrize('variant', ['s', 'b', 'l'])
def test_scalablevit_classification_recipe(variant):
    """image_classification/main.py: 5 warm-up epochs from 1e-6 (1e-3 of
    the lr), cosine to 1e-5, gradient norm clipped at 5."""
    cfg = _cfg(f'configs/scalablevit/scalablevit-{variant}_8xb128_in1k.py')
    warmup, cosine = cfg.param_scheduler
    assert (warmup.type, warmup.start_factor, warmup.end) == ('LinearLR',
                                                              1e-3, 5)
    assert (cosine.type, cosine.begin, cosine.eta_min) == (
        'CosineAnnealingLR', 5, 1e-5)
    assert cfg.optim_wrapper.clip_grad.max_norm == 5.0
    assert cfg.optim_wrapper.optimizer.lr == 1e-3
    assert cfg.auto_scale_lr.base_batch_size == 1024


def test_groupmixformer_classification_recipe():
    import torch
    from mmpretrain.registry import MODELS
    cfg = _cfg('configs/groupmixformer/groupmixformer-m_8xb128_in1k.py')
    init_default_scope('mmpretrain')
    # The head starts from trunc_normal(std=0.02), zero bias, as officially.
    head = MODELS.build(cfg.model.head)
    head.init_weights()
    assert 0.018 < head.fc.weight.std().item() < 0.022
    assert head.fc.weight.abs().max().item() <= 2.
    assert torch.all(head.fc.bias == 0)
    # L at 384: Swin's fine-tuning, lr 2e-5 per 512 images, warm-up from
    # 1e-3 of it, cosine to 1e-2 of it.
    cfg = _cfg('configs/groupmixformer/groupmixformer-l_8xb128_in1k-384px.py')
    assert cfg.optim_wrapper.optimizer.lr / cfg.auto_scale_lr.base_batch_size \
        == pytest.approx(2e-5 / 512)
    warmup, cosine = cfg.param_scheduler
    assert (warmup.start_factor, warmup.end) == (1e-3, 5)
    assert cosine.eta_min == pytest.approx(cfg.optim_wrapper.optimizer.lr /
                                           100)


@pytest.mark.parametrize('variant,drop_path', [('s', 0.2), ('m', 0.25),
                                               ('l', 0.25)])
def test_refiner_classification_recipe(variant, drop_path):
    """scripts/refiner_{s,m,l}_relabel.yaml: the runs of the released
    checkpoints."""
    cfg = _cfg(f'configs/refiner/refiner-vit-{variant}_8xb128_in1k.py')
    assert cfg.model.backbone.drop_path_rate == drop_path
    # 300 cosine epochs, then 10 cool-down epochs at the minimum lr.
    warmup, cosine = cfg.param_scheduler
    assert (warmup.start_factor, warmup.end) == (1e-3, 5)
    assert (cosine.begin, cosine.end, cosine.eta_min) == (5, 300, 1e-5)
    assert cfg.train_cfg.max_epochs == 310
    # Random erasing draws normal noise in normalised space, as timm does:
    # mean + std * N(0, 1) in pixels.
    preprocessor = cfg.data_preprocessor
    [erasing] = [
        t for t in cfg.train_dataloader.dataset.pipeline
        if t.type == 'RandomErasing'
    ]
    assert erasing.fill_color == preprocessor.mean
    assert erasing.fill_std == preprocessor.std
    assert cfg.custom_hooks[0].type == 'EMAHook'


def test_refiner_l_448_recipe():
    cfg = _cfg('configs/refiner/refiner-vit-l_8xb64_in1k-448px.py')
    assert cfg.model.backbone.img_size == 448
    assert (cfg.optim_wrapper.optimizer.lr,
            cfg.auto_scale_lr.base_batch_size) == (5e-4, 512)
    assert cfg.train_dataloader.batch_size * 8 == 512
    [erasing] = [
        t for t in cfg.train_dataloader.dataset.pipeline
        if t.type == 'RandomErasing'
    ]
    assert erasing.fill_color == cfg.data_preprocessor.mean


@pytest.mark.parametrize('config', [
    'configs/scalablevit/retinanet_scalablevit-b_fpn_ms-crop-3x_coco.py',
    'configs/scalablevit/mask-rcnn_scalablevit-s_fpn_ms-crop-3x_coco.py',
    'configs/groupmixformer/mask-rcnn_groupmixformer-t_fpn_ms-crop-3x_coco.py'
])
def test_3x_recipe(config):
    """Swin / PVT 3x: multi-scale resizes or a random crop, 36 epochs, lr
    steps at 27 and 33, the 1x config's model and optimizer."""
    cfg = _cfg(config)
    one_x = _cfg(config.replace('ms-crop-3x', '1x'))
    assert cfg.model == one_x.model
    assert cfg.optim_wrapper == one_x.optim_wrapper
    pipeline = cfg.train_dataloader.dataset.pipeline
    assert [t.type for t in pipeline] == [
        'LoadImageFromFile', 'LoadAnnotations', 'RandomFlip', 'RandomChoice',
        'PackDetInputs'
    ]
    assert pipeline[1].get('with_mask', False) == ('mask-rcnn' in config)
    single, crop = pipeline[3].transforms
    assert len(single[0].scales) == 11 and single[0].scales[-1] == (800,
                                                                     1333)
    assert [t.type for t in crop] == [
        'RandomChoiceResize', 'RandomCrop', 'RandomChoiceResize'
    ]
    assert cfg.train_cfg.max_epochs == 36
    warmup, steps = cfg.param_scheduler
    assert (warmup.type, warmup.end) == ('LinearLR', 1000)
    assert (steps.milestones, steps.end) == ([27, 33], 36)


# One small configuration per family, detector and segmentor kind (the
# others inherit their TTA settings from the same bases).
TTA_CONFIGS = [
    'configs/scalablevit/retinanet_scalablevit-s_fpn_ms-crop-3x_coco.py',
    'configs/groupmixformer/retinanet_groupmixformer-t_fpn_1x_coco.py',
    'configs/scalablevit/upernet_scalablevit-s_8xb2-160k_ade20k-512x512.py',
    'configs/groupmixformer/fpn_groupmixformer-t_4xb4-80k_ade20k-512x512.py',
    'configs/refiner/upernet_refiner-vit-s_8xb2-160k_ade20k-512x512.py',
    'configs/demo/upernet_scalablevit-tiny_demo-ade.py',
]


@pytest.mark.parametrize('config', TTA_CONFIGS)
def test_test_time_augmentation(config):
    """tools/test.py --tta wraps the model in the config's TTA model and
    tests on its multi-scale, flipped views."""
    from mmscalable.engine.runner import add_test_time_augmentation
    cfg = _cfg(config)
    model = cfg.model
    add_test_time_augmentation(cfg)
    assert cfg.model.type == ('DetTTAModel' if 'retinanet' in config else
                              'SegTTAModel')
    assert cfg.model.module == model
    [tta] = [
        t for t in cfg.test_dataloader.dataset.pipeline
        if t.type == 'TestTimeAug'
    ]
    resizes, flips = tta.transforms[:2]
    assert len(resizes) >= 3
    assert sorted(f.prob for f in flips) == [0., 1.]


def test_test_time_augmentation_refuses_what_it_cannot_merge():
    from mmscalable.engine.runner import add_test_time_augmentation
    with pytest.raises(ValueError, match='predicts masks'):
        add_test_time_augmentation(
            _cfg('configs/scalablevit/mask-rcnn_scalablevit-s_fpn_1x_coco.py'))
    with pytest.raises(ValueError, match='has no tta_model and no '
                       'tta_pipeline'):
        add_test_time_augmentation(
            _cfg('configs/scalablevit/scalablevit-s_8xb128_in1k.py'))


@pytest.mark.parametrize('variant', ['s', 'm', 'l'])
def test_refiner_384_fine_tuning(variant):
    """From the 224 classifier (position embedding resized on loading),
    LV-ViT's fine-tuning: constant lr 5e-6 for 256 images, weight decay
    1e-8, evaluation at 384 with crop ratio 1.0."""
    cfg = _cfg(f'configs/refiner/refiner-vit-{variant}_8xb32_in1k-384px.py')
    backbone = cfg.model.backbone
    assert (backbone.arch, backbone.img_size) == (variant, 384)
    assert backbone.init_cfg == dict(
        type='Pretrained',
        checkpoint=f'checkpoints/refiner-vit-{variant}_in1k.pth',
        prefix='backbone.')
    assert (cfg.optim_wrapper.optimizer.lr,
            cfg.optim_wrapper.optimizer.weight_decay) == (5e-6, 1e-8)
    assert cfg.auto_scale_lr.base_batch_size == 8 * \
        cfg.train_dataloader.batch_size == 256
    [warmup] = cfg.param_scheduler
    assert (warmup.type, warmup.end) == ('LinearLR', 5)
    assert cfg.train_cfg.max_epochs == 30 and cfg.custom_hooks == []
    crop = cfg.test_dataloader.dataset.pipeline[-2]
    assert (crop.type, crop.crop_size) == ('CenterCrop', 384)
