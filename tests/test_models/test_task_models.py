"""The backbone inside mmdet, mmseg and mmpretrain models: loss and predict."""
import copy
import glob
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

from mmscalable.models.families import FAMILIES

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
# Eight blocks, for stride-16 outputs of refiner blocks at indices 1 to 7.
REFINER_TINY = dict(
    FAMILIES['refiner'].tiny_arch, embed_dims=32, depth=8, num_heads=4)
# The attention maps of the tiny Refiner in chunks of a few query rows (5 to
# 9 chunks with their halos on the inputs below), as at dense-prediction
# sizes; smaller chunks only make the tests slower.
REFINER_CHUNK_BYTES = 400_000
# The families with detection and segmentation configs.
DENSE_FAMILIES = [
    name for name, family in FAMILIES.items() if glob.glob(
        osp.join(ROOT, family.configs, 'mask-rcnn_*.py'))
]


def refiner_dense_config(name, **backbone):
    """A dense Refiner config with a tiny Refiner-ViT in place of S: the
    config's own neck, heads wiring, preprocessing and norm_eval."""
    cfg = Config.fromfile(osp.join(ROOT, 'configs/refiner', name))
    assert cfg.model.backbone.norm_eval
    cfg.model.backbone.update(
        arch=copy.deepcopy(REFINER_TINY),
        init_cfg=None,
        attn_memory_budget=REFINER_CHUNK_BYTES,
        **backbone)
    return cfg


def mask_rcnn_config(family):
    if family == 'refiner':
        cfg = refiner_dense_config(
            'mask-rcnn_refiner-vit-s_fpn_1x_coco.py', out_indices=(7, ))
        cfg.model.neck.update(
            in_channels=REFINER_TINY['embed_dims'], out_channels=64)
        # Heads as small as the demo configs'.
        cfg.merge_from_dict(
            dict(
                model=dict(
                    rpn_head=dict(in_channels=64, feat_channels=64),
                    roi_head=dict(
                        bbox_roi_extractor=dict(out_channels=64),
                        bbox_head=dict(
                            in_channels=64, fc_out_channels=256,
                            num_classes=3),
                        mask_roi_extractor=dict(out_channels=64),
                        mask_head=dict(
                            in_channels=64,
                            conv_out_channels=64,
                            num_classes=3)))))
        return cfg
    cfg = Config.fromfile(
        osp.join(ROOT,
                 f'configs/demo/mask-rcnn_{family}-tiny_fpn_demo-coco.py'))
    arch = FAMILIES[family].tiny_arch
    cfg.model.backbone.arch = copy.deepcopy(arch)
    cfg.model.neck.in_channels = arch['embed_dims']
    return cfg


def upernet_config(family):
    if family == 'refiner':
        # img_size as the config: the size of the crops.
        cfg = refiner_dense_config(
            'upernet_refiner-vit-s_8xb2-160k_ade20k-512x512.py',
            img_size=128,
            out_indices=(1, 3, 5, 7))
        cfg.model.data_preprocessor.size = (128, 128)
        dims = REFINER_TINY['embed_dims']
        cfg.model.neck.update(in_channels=[dims] * 4, out_channels=dims)
        cfg.model.decode_head.update(in_channels=[dims] * 4, channels=32)
        cfg.model.auxiliary_head.update(in_channels=dims, channels=32)
        return cfg
    cfg = Config.fromfile(
        osp.join(ROOT, f'configs/demo/upernet_{family}-tiny_demo-ade.py'))
    arch = FAMILIES[family].tiny_arch
    cfg.model.backbone.arch = copy.deepcopy(arch)
    cfg.model.decode_head.in_channels = arch['embed_dims']
    cfg.model.auxiliary_head.in_channels = arch['embed_dims'][2]
    return cfg


def assert_every_backbone_parameter_has_a_gradient(model):
    """The chunked refined attention's backward reaches every parameter
    (norm_eval freezes BatchNorm statistics, not the affine weights)."""
    missing = [
        name for name, p in model.backbone.named_parameters()
        if p.grad is None or not torch.isfinite(p.grad).all()
    ]
    assert not missing, missing
    assert model.backbone.norm_eval
    assert not any(m.training for m in model.backbone.modules()
                   if isinstance(m, torch.nn.BatchNorm2d))


def test_attention_modules_build_from_every_task_registry():
    from mmdet.registry import MODELS as DET_MODELS
    from mmpretrain.registry import MODELS as CLS_MODELS
    from mmseg.registry import MODELS as SEG_MODELS
    for registry in (DET_MODELS, SEG_MODELS, CLS_MODELS):
        ssa = registry.build(
            dict(
                type='mmscalable.ScalableSelfAttention',
                embed_dims=32,
                num_heads=2,
                spatial_ratio=2,
                channel_ratio=1.25))
        iwsa = registry.build(
            dict(
                type='mmscalable.InteractiveWindowAttention',
                embed_dims=32,
                num_heads=2))
        x = torch.randn(1, 64, 32)
        assert ssa(x, (8, 8)).shape == iwsa(x, (8, 8)).shape == x.shape
        gma = registry.build(
            dict(type='mmscalable.GroupMixAttention', embed_dims=40))
        assert gma(torch.randn(1, 64, 40), (8, 8)).shape == (1, 64, 40)
        refined = registry.build(
            dict(
                type='mmscalable.RefinedAttention', embed_dims=32,
                num_heads=4))
        out, attn = refined(torch.randn(1, 10, 32))
        assert out.shape == (1, 10, 32) and attn.shape == (1, 4, 10, 10)
        for family in FAMILIES.values():
            backbone = registry.build(
                dict(
                    type=f'mmscalable.{family.backbone}',
                    arch=copy.deepcopy(family.tiny_arch)))
            assert type(backbone).__name__ == family.backbone


@pytest.mark.parametrize('family', DENSE_FAMILIES)
def test_mask_rcnn_loss_and_predict(family):
    from mmdet.registry import MODELS
    from mmdet.testing import demo_mm_inputs
    cfg = mask_rcnn_config(family)
    init_default_scope('mmdet')
    model = MODELS.build(cfg.model)
    model.init_weights()
    # As the runner does before training (norm_eval acts in train()).
    model.train()
    packed = demo_mm_inputs(
        2, [[3, 96, 128], [3, 80, 100]], num_classes=3, with_mask=True)
    data = model.data_preprocessor(packed, True)
    # The RoI heads read NCHW-contiguous maps (mmcv's CPU RoIAlign misreads
    # channels-last ones).
    feats = model.extract_feat(data['inputs'])
    assert all(f.is_contiguous() for f in feats)
    # Strides 4 to 32 of the padded batch (96 x 128), and P6.
    assert [tuple(f.shape[2:]) for f in feats] == [(24, 32), (12, 16), (6, 8),
                                                   (3, 4), (2, 2)]
    losses = model(**data, mode='loss')
    # RPN losses are lists over FPN levels.
    total = sum(
        sum(v) if isinstance(v, list) else v for k, v in losses.items()
        if 'loss' in k)
    assert torch.isfinite(total)
    total.backward()
    assert next(model.backbone.parameters()).grad is not None
    if family == 'refiner':
        assert_every_backbone_parameter_has_a_gradient(model)
    model.eval()
    with torch.no_grad():
        results = model(
            **model.data_preprocessor(packed, False), mode='predict')
    assert len(results) == 2
    assert 'masks' in results[0].pred_instances


@pytest.mark.parametrize('family', DENSE_FAMILIES)
def test_upernet_loss_and_predict(family):
    from mmengine.structures import PixelData
    from mmseg.registry import MODELS
    from mmseg.structures import SegDataSample
    cfg = upernet_config(family)
    init_default_scope('mmseg')
    model = MODELS.build(cfg.model)
    model.init_weights()
    # As the runner does before training (norm_eval acts in train()).
    model.train()
    inputs, samples = [], []
    for _ in range(2):
        inputs.append(torch.randint(0, 255, (3, 128, 128), dtype=torch.uint8))
        sample = SegDataSample()
        sample.gt_sem_seg = PixelData(
            data=torch.randint(0, 4, (1, 128, 128), dtype=torch.long))
        sample.set_metainfo(
            dict(
                img_shape=(128, 128),
                ori_shape=(128, 128),
                pad_shape=(128, 128)))
        samples.append(sample)
    data = model.data_preprocessor(
        dict(inputs=inputs, data_samples=samples), True)
    losses = model(**data, mode='loss')
    total = sum(v for k, v in losses.items() if 'loss' in k)
    assert torch.isfinite(total)
    total.backward()
    if family == 'refiner':
        assert_every_backbone_parameter_has_a_gradient(model)
    model.eval()
    with torch.no_grad():
        results = model(
            **model.data_preprocessor(
                dict(inputs=inputs, data_samples=samples), False),
            mode='predict')
    assert results[0].pred_sem_seg.data.shape == (1, 128, 128)


@pytest.mark.parametrize('family', ['scalablevit', 'groupmixformer'])
def test_classifier_loss_and_predict(family):
    from mmpretrain.registry import MODELS
    from mmpretrain.structures import DataSample
    cfg = Config.fromfile(
        osp.join(ROOT, f'configs/{family}/{family}-s_8xb128_in1k.py'))
    init_default_scope('mmpretrain')
    cfg.model.backbone.arch = copy.deepcopy(FAMILIES[family].tiny_arch)
    if family == 'scalablevit':
        cfg.model.head.hidden_dims = 32
    else:
        # SyncBN needs a process group; one process uses BN (same keys).
        cfg.model.backbone.norm_cfg = dict(type='BN')
    cfg.model.head.in_channels = cfg.model.backbone.arch['embed_dims'][-1]
    cfg.model.head.num_classes = 5
    model = MODELS.build(cfg.model)
    model.init_weights()
    inputs = torch.randn(4, 3, 64, 64)
    samples = [DataSample().set_gt_label(i % 5) for i in range(4)]
    losses = model.loss(inputs, samples)
    assert torch.isfinite(losses['loss'])
    model.eval()
    with torch.no_grad():
        preds = model.predict(inputs)
    assert preds[0].pred_score.shape == (5, )
