"""The benchmark: records, agreement check, outputs and the CLI (CPU)."""
import json
import os.path as osp
import subprocess
import sys

import pytest
import torch
import torch.nn as nn

from mmscalable.analysis.benchmark import (ImplementationMismatch, Setting,
                                           markdown_table, named_models,
                                           run_benchmark, speedups,
                                           write_outputs)
from mmscalable.models import GroupMixFormer, RefinerViT, ScalableViT

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TOOL = osp.join(ROOT, 'tools/analysis_tools/benchmark.py')

TINY_BUILDERS = {
    'scalablevit-tiny':
    lambda impl: ScalableViT(
        arch=dict(embed_dims=[16, 32, 48, 64], depths=[1, 1, 1, 1],
                  num_heads=[1, 2, 3, 4], channel_ratios=[1.25, 1, 1, 1]),
        attn_impl=impl),
    'groupmixformer-tiny':
    lambda impl: GroupMixFormer(
        arch=dict(embed_dims=[40, 40, 80, 80], depths=[1, 1, 1, 1],
                  mlp_ratios=[2, 2, 2, 2]),
        attn_impl=impl),
    'refiner-tiny':
    lambda impl: RefinerViT(
        arch=dict(embed_dims=48, depth=4, num_heads=4), attn_impl=impl),
}


def _quiet(_):
    pass


def test_models_are_every_variant_of_every_family():
    """One model per distinct variant of each family's ``arch_zoo``, named
    as the configs name them."""
    assert list(named_models()) == [
        'scalablevit-s', 'scalablevit-b', 'scalablevit-l',
        'groupmixformer-m', 'groupmixformer-t', 'groupmixformer-s',
        'groupmixformer-b', 'groupmixformer-l', 'refiner-vit-s',
        'refiner-vit-m', 'refiner-vit-l'
    ]


def test_records_for_every_combination():
    results = run_benchmark(
        list(TINY_BUILDERS), [Setting.parse('64x48:2')],
        modes=('inference', 'train'), dtypes=('fp32', 'bf16'),
        impls=('reference', 'fast'), device='cpu', warmup=1, repeats=2,
        builders=TINY_BUILDERS, log=_quiet)
    records = results['records']
    assert len(records) == 3 * 2 * 2 * 2
    assert results['device'] == 'cpu'
    for r in records:
        assert r['status'] == 'ok', r
        assert r['images_per_s'] > 0 and r['latency_ms'] > 0
        assert r['batch'] == 2 and (r['height'], r['width']) == (64, 48)
        assert r['gflops_per_image'] > 0
        assert r['agreement_rel_error'] < 1e-4
        assert r['peak_memory_mib'] is None  # not measured on the CPU
        assert 'peak_fraction' not in r  # no known peak for a CPU
    rows = speedups(results)
    assert len(rows) == 3 * 2 * 2
    assert all(r['fast_speedup'] > 0 for r in rows)


def test_training_steps_start_from_the_same_weights():
    """A training step changes the weights; every timed run reloads the
    initial ones."""
    seen = []

    def recording(impl):
        model = TINY_BUILDERS['scalablevit-tiny'](impl)
        original = model.forward

        def forward(x):
            seen.append(next(model.parameters()).detach().clone())
            return original(x)

        model.forward = forward
        return model

    run_benchmark(['m'], [Setting.parse('32x32:1')], modes=('train', ),
                  dtypes=('fp32', 'bf16'), device='cpu', warmup=0, repeats=1,
                  count_model_flops=False, builders={'m': recording},
                  log=_quiet)
    # The agreement check (reference, fast), then one step per dtype and
    # impl: each begins from the initial weights.
    assert len(seen) == 6
    for weights in seen[1:]:
        assert torch.equal(weights, seen[0])


class _Toy(nn.Module):

    def __init__(self, impl, offset):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.offset = offset if impl == 'reference' else 0.

    def forward(self, x):
        return (self.conv(x) + self.offset, )


def test_disagreeing_implementations_are_refused():
    builders = {'toy': lambda impl: _Toy(impl, 1e-2)}
    with pytest.raises(ImplementationMismatch, match='relative error'):
        run_benchmark(['toy'], [Setting.parse('16x16:1')], device='cpu',
                      builders=builders, log=_quiet)
    agreeing = {'toy': lambda impl: _Toy(impl, 0.)}
    run_benchmark(['toy'], [Setting.parse('16x16:1')], modes=('inference', ),
                  dtypes=('fp32', ), device='cpu', warmup=0, repeats=1,
                  builders=agreeing, log=_quiet)


@pytest.mark.parametrize('text,match', [('224:64', 'HxW:BATCH'),
                                        ('axb:2', 'HxW:BATCH'),
                                        ('224x224:0', 'positive')])
def test_bad_settings_are_named(text, match):
    with pytest.raises(ValueError, match=match):
        Setting.parse(text)


def test_bad_arguments_are_named():
    builders = {'toy': lambda impl: _Toy(impl, 0.)}
    setting = [Setting.parse('16x16:1')]
    with pytest.raises(KeyError, match="unknown models \\['nope'\\]"):
        run_benchmark(['nope'], setting, device='cpu', builders=builders)
    with pytest.raises(ValueError, match="unknown dtype \\['fp8'\\]"):
        run_benchmark(['toy'], setting, dtypes=('fp8', ), device='cpu',
                      builders=builders)


def test_outputs(tmp_path):
    builders = {'toy': lambda impl: _Toy(impl, 0.)}
    results = run_benchmark(['toy'], [Setting.parse('16x16:2')],
                            device='cpu', warmup=0, repeats=1,
                            builders=builders, log=_quiet)
    paths = write_outputs(results, str(tmp_path / 'bench'))
    with open(paths[0]) as f:
        assert json.load(f)['records'] == results['records']
    table = open(paths[1]).read()
    assert '| toy | 16x16:2 | inference | fp32 |' in table
    assert '| toy | 16x16:2 | train | bf16 |' in table
    assert table == markdown_table(results)
    assert open(paths[2], 'rb').read(8) == b'\x89PNG\r\n\x1a\n'


def _run_tool(*args):
    return subprocess.run([sys.executable, TOOL, *args], cwd=ROOT,
                          capture_output=True, text=True)


def test_cli_on_cpu(tmp_path):
    result = _run_tool('--device', 'cpu', '--models', 'groupmixformer-m',
                       '--settings', '64x64:1', '--modes', 'inference',
                       '--dtypes', 'fp32', '--warmup', '0', '--repeats', '1',
                       '--out', str(tmp_path / 'out' / 'cpu'))
    assert result.returncode == 0, result.stderr[-3000:]
    assert 'fast and reference agree' in result.stdout
    with open(tmp_path / 'out' / 'cpu.json') as f:
        records = json.load(f)['records']
    assert [r['impl'] for r in records] == ['reference', 'fast']


@pytest.mark.parametrize('args,message', [
    (['--models', 'resnet-50'], "unknown models ['resnet-50']"),
    (['--settings', '224'], 'HxW:BATCH'),
])
def test_cli_errors(tmp_path, args, message):
    result = _run_tool('--device', 'cpu', '--out', str(tmp_path / 'x'), *args)
    assert result.returncode == 2
    assert message in result.stderr


@pytest.mark.slow
@pytest.mark.parametrize('model', list(TINY_BUILDERS))
def test_compiled_column_on_cpu(model):
    results = run_benchmark(
        [model], [Setting.parse('64x64:2')],
        modes=('inference', 'train'), dtypes=('fp32', ),
        impls=('reference', 'fast', 'compile'), device='cpu', warmup=1,
        repeats=1, count_model_flops=False, builders=TINY_BUILDERS,
        log=_quiet)
    compiled = [r for r in results['records'] if r['impl'] == 'compile']
    assert [r['status'] for r in compiled] == ['ok', 'ok']
    assert all(r['compile_speedup'] for r in speedups(results))


@pytest.mark.parametrize('config', [
    'configs/demo/mask-rcnn_scalablevit-tiny_fpn_demo-coco.py',
    'configs/demo/upernet_groupmixformer-tiny_demo-ade.py',
])
def test_whole_detectors_and_segmentors(config):
    results = run_benchmark(
        [osp.join(ROOT, config)], [Setting.parse('96x128:2')],
        modes=('inference', 'train'), dtypes=('fp32', ), device='cpu',
        warmup=1, repeats=1, count_model_flops=False, log=_quiet)
    records = results['records']
    assert [(r['mode'], r['impl']) for r in records] == [
        ('inference', 'reference'), ('inference', 'fast'),
        ('train', 'reference'), ('train', 'fast')]
    assert all(r['status'] == 'ok' for r in records)
    assert records[0]['agreement_rel_error'] < 1e-4


def test_task_model_errors(tmp_path):
    from mmscalable.analysis.task_models import config_builder
    config = tmp_path / 'cls.py'
    config.write_text("default_scope = 'mmpretrain'\nmodel = dict()\n")
    with pytest.raises(ValueError, match="default_scope must be one of"):
        config_builder(str(config))
    # Every family's dense configs are benchmarked the same way.
    assert callable(
        config_builder(
            osp.join(ROOT, 'configs/refiner/'
                     'upernet_refiner-vit-s_8xb2-160k_ade20k-512x512.py')))


def test_cli_renders_an_earlier_run(tmp_path):
    builders = {'toy': lambda impl: _Toy(impl, 0.)}
    results = run_benchmark(['toy'], [Setting.parse('16x16:2')],
                            modes=('inference', ), dtypes=('fp32', ),
                            device='cpu', warmup=0, repeats=1,
                            builders=builders, log=_quiet)
    json_path = tmp_path / 'run.json'
    json_path.write_text(json.dumps(results))
    result = _run_tool('--render', str(json_path), '--out',
                       str(tmp_path / 'again'))
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / 'again.md').read_text() == markdown_table(results)
    assert (tmp_path / 'again.png').is_file()
    assert not (tmp_path / 'again.json').exists()
