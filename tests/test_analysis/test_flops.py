"""get_flops: the papers' resolutions, conventions and figures."""
import json
import os.path as osp
import subprocess
import sys

import pytest
import torch
from mmengine.config import Config
from tiny_backbones import BACKBONES

from mmscalable.analysis import flops
from mmscalable.models.layers import dispatch

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DEMO_DET = osp.join(ROOT,
                    'configs/demo/mask-rcnn_scalablevit-tiny_fpn_demo-coco.py')
DEMO_SEG = osp.join(ROOT, 'configs/demo/upernet_scalablevit-tiny_demo-ade.py')
DEMO_CLS = osp.join(ROOT, 'configs/demo/scalablevit-tiny_demo-cls.py')
DEMO_GROUPMIX_SEG = osp.join(
    ROOT, 'configs/demo/upernet_groupmixformer-tiny_demo-ade.py')


@pytest.mark.parametrize('config,shape,convention', [
    ('configs/scalablevit/mask-rcnn_scalablevit-s_fpn_1x_coco.py',
     (1280, 800), 'mmcv'),
    ('configs/groupmixformer/fpn_groupmixformer-s_4xb4-80k_ade20k-512x512.py',
     (512, 2048), 'mmcv'),
    ('configs/refiner/refiner-vit-l_8xb64_in1k-448px.py', (448, 448),
     'fvcore'),
    ('configs/scalablevit/scalablevit-s_8xb128_in1k.py', (224, 224), 'fvcore'),
    # Resized to 384x384 without a crop.
    ('configs/groupmixformer/groupmixformer-l_8xb128_in1k-384px.py',
     (384, 384), 'fvcore'),
])
def test_paper_resolution_and_convention(config, shape, convention):
    cfg = Config.fromfile(osp.join(ROOT, config))
    assert flops.paper_resolution(cfg) == shape
    assert flops.paper_convention(cfg) == convention


def test_reported_figures_come_from_the_metafiles():
    paper = flops.reported(
        osp.join(ROOT, 'configs/scalablevit/mask-rcnn_scalablevit-s_fpn_1x_'
                 'coco.py'))
    assert paper == dict(params=46300000, flops=256000000000)
    assert flops.reported(DEMO_DET) == dict(params=None, flops=None)
    configs = flops.configs_with_reported_flops()
    assert all(osp.isfile(c) for c in configs)
    assert len(configs) >= 20


def test_mmcv_convention_leaves_out_the_attention_matmuls():
    every_op = flops.count(DEMO_DET, (128, 128), 'fvcore')
    layers_only = flops.count(DEMO_DET, (128, 128), 'mmcv')
    assert every_op['params'] == layers_only['params'] > 0
    assert 0 < layers_only['flops'] < every_op['flops']
    with pytest.raises(ValueError, match='convention must be one of'):
        flops.count(DEMO_DET, (128, 128), 'ptflops')


@pytest.mark.parametrize('config', [DEMO_SEG, DEMO_CLS])
def test_counts_segmentors_and_classifiers(config):
    record = flops.count(config, (64, 64))
    assert record['flops'] > 0 and record['params'] > 0
    table = flops.markdown_table([record])
    assert f'| {osp.basename(config)[:-3]} | 64x64 |' in table


@pytest.mark.slow
@pytest.mark.parametrize('config', [
    'configs/scalablevit/scalablevit-s_8xb128_in1k.py',
    'configs/scalablevit/mask-rcnn_scalablevit-s_fpn_1x_coco.py',
])
def test_papers_flops_within_3_percent(config):
    record = flops.count(osp.join(ROOT, config))
    assert abs(record['flops'] / record['paper_flops'] - 1) < 0.03, record


def test_cli(tmp_path):
    out = tmp_path / 'flops.json'
    result = subprocess.run([
        sys.executable,
        osp.join(ROOT, 'tools/analysis_tools/get_flops.py'), DEMO_CLS,
        DEMO_CLS, '--shape', '64', '64', '--out',
        str(out)
    ],
                            capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.count('| scalablevit-tiny_demo-cls | 64x64 |') == 4
    # Progress: one line per config, as it starts.
    assert '[1/2] ' in result.stderr and '[2/2] ' in result.stderr
    assert 'pkg_resources' not in result.stderr
    records = json.loads(out.read_text())
    assert records[0]['shape'] == [64, 64] and records[0] == records[1]
    result = subprocess.run(
        [sys.executable,
         osp.join(ROOT, 'tools/analysis_tools/get_flops.py')],
        capture_output=True,
        text=True)
    assert result.returncode != 0
    assert 'give config files or --reported' in result.stderr


def test_a_model_is_counted_once(monkeypatch):
    from mmscalable.analysis import flops
    calls = []

    def counted(cfg, height, width, convention):
        calls.append((height, width, convention))
        return 1, 2.

    monkeypatch.setattr(flops, '_COUNTED', {})
    monkeypatch.setattr(flops, '_count_model', counted)
    for _ in range(2):
        record = flops.count(DEMO_CLS, (64, 64), 'fvcore')
        assert (record['params'], record['flops']) == (1, 2.)
    flops.count(DEMO_CLS, (32, 32), 'fvcore')
    assert calls == [(64, 64, 'fvcore'), (32, 32, 'fvcore')]


def _impls(model):
    return [(name, getattr(module, attr)) for name, module in
            model.named_modules() for attr in ('impl', 'attn_impl')
            if hasattr(module, attr)]


# Fast-path settings that change its operations: Refiner-ViT's maps
# computed in chunks of query rows (which mmengine's tracer cannot trace).
FAST_SETTINGS = dict(refiner=dict(attn_memory_budget=2048))


@pytest.mark.parametrize('choice', ['cpu-choice', 'gpu-choice'])
@pytest.mark.parametrize('family', sorted(BACKBONES))
def test_flops_do_not_depend_on_the_implementation(family, choice,
                                                   monkeypatch):
    """GroupMixFormer's fast path folds norms and writes products in place,
    ScalableViT's runs SDPA on GPUs, Refiner-ViT's chunks its maps: the
    count is that of the reference path all the same."""
    if choice == 'gpu-choice':
        # The GPU's fused formulations (SDPA) forced onto the CPU.
        monkeypatch.setattr(dispatch, 'prefers_one_launch',
                            lambda facts: True)
    fast = BACKBONES[family](
        attn_impl='fast', **FAST_SETTINGS.get(family, {})).train()
    reference = BACKBONES[family](attn_impl='reference')
    reference.load_state_dict(fast.state_dict())
    images = (torch.randn(1, 3, 64, 96), )
    impls = _impls(fast)
    assert {impl for _, impl in impls} == {'fast'}
    for convention in flops.CONVENTIONS:
        fast_count = flops.count_flops(fast, images, convention)
        assert fast_count == flops.count_flops(reference, images,
                                               convention) > 0
    # The model is given back as it came: its impls and training mode.
    assert _impls(fast) == impls and fast.training


def test_config_counts_do_not_depend_on_the_implementation(tmp_path):
    counts = []
    for impl in ('fast', 'reference'):
        config = tmp_path / f'{impl}.py'
        config.write_text(f"_base_ = ['{DEMO_GROUPMIX_SEG}']\n"
                          f"model = dict(backbone=dict(attn_impl='{impl}'))\n")
        record = flops.count(str(config), (64, 64), 'fvcore')
        counts.append((record['params'], record['flops']))
    assert counts[0] == counts[1]


def _documented_rows():
    """The rows of docs/flops.md's tables, by config name."""
    with open(osp.join(ROOT, 'docs', 'flops.md')) as f:
        return {
            line.split('|')[1].strip(): line.strip()
            for line in f if line.startswith('| ') and ' | ' in line
        }


@pytest.mark.slow
@pytest.mark.parametrize('config', [
    'configs/scalablevit/scalablevit-s_8xb128_in1k.py',
    'configs/groupmixformer/groupmixformer-t_8xb128_in1k.py',
    'configs/groupmixformer/groupmixformer-s_8xb128_in1k.py',
    'configs/refiner/refiner-vit-s_8xb128_in1k.py',
    'configs/scalablevit/mask-rcnn_scalablevit-s_fpn_1x_coco.py',
])
def test_counts_are_those_documented(config):
    """What get_flops.py prints for a full-size config of every family is
    the row of docs/flops.md."""
    record = flops.count(osp.join(ROOT, config))
    row = flops.markdown_table([record]).splitlines()[-1]
    assert _documented_rows()[osp.basename(config)[:-3]] == row
