"""The benchmark: records, agreement check, outputs and the CLI (CPU)."""
import importlib.util
import json
import os.path as osp
import subprocess
import sys
import types

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from tiny_backbones import tiny_backbone

from mmscalable.analysis.benchmark import (ImplementationMismatch, Setting,
                                           check_agreement, failed_records,
                                           isolation, markdown_table,
                                           named_models, records,
                                           run_benchmark, runner,
                                           sdpa_backends, speedups,
                                           write_outputs)
from mmscalable.models import InteractiveWindowAttention, ScalableSelfAttention
from mmscalable.models.families import FAMILIES
from mmscalable.models.layers import dispatch
from mmscalable.models.layers.dispatch import BACKENDS

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TOOL = osp.join(ROOT, 'tools/analysis_tools/benchmark.py')

# The tiny model of every family, named <family>-tiny.
TINY_BUILDERS = {
    f'{name}-tiny':
    (lambda name: lambda impl: tiny_backbone(name, attn_impl=impl))(name)
    for name in FAMILIES
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


@pytest.mark.parametrize('family', list(FAMILIES))
def test_every_family_is_in_the_benchmark(family):
    spec = FAMILIES[family]
    assert [n for n in named_models() if n in spec.model_names
            ] == spec.model_names
    name = f'{family}-tiny'
    results = run_benchmark(
        [name], [Setting.parse('64x48:1')],
        modes=('inference', 'train'), dtypes=('fp32', ),
        impls=('reference', 'fast'), device='cpu', warmup=0, repeats=1,
        builders={name: TINY_BUILDERS[name]}, log=_quiet)
    for r in results['records']:
        assert r['status'] == 'ok', r
        assert r['agreement_rel_error'] < 1e-4
        assert spec.attention in r['backends'], r
        expected = {'reference'} if r['impl'] == 'reference' else set(
            BACKENDS) - {'reference'}
        assert set(r['backends'][spec.attention]) <= expected, r


def test_records_for_every_combination():
    results = run_benchmark(
        list(TINY_BUILDERS), [Setting.parse('64x48:2')],
        modes=('inference', 'train'), dtypes=('fp32', 'bf16'),
        impls=('reference', 'fast'), device='cpu', warmup=1, repeats=2,
        builders=TINY_BUILDERS, log=_quiet)
    records = results['records']
    assert len(records) == len(TINY_BUILDERS) * 2 * 2 * 2
    assert results['device'] == 'cpu'
    for r in records:
        assert r['status'] == 'ok', r
        assert r['images_per_s'] > 0 and r['latency_ms'] > 0
        assert r['batch'] == 2 and (r['height'], r['width']) == (64, 48)
        assert r['gflops_per_image'] > 0
        assert r['agreement_rel_error'] < 1e-4
        assert r['peak_memory_mib'] is None  # not measured on the CPU
        assert 'peak_fraction' not in r  # no known peak for a CPU
        # Of the matmul throughput measured in the run, for its dtype.
        assert 0 < r['matmul_fraction'] < 1, r
        assert r['matmul_fraction'] == pytest.approx(
            2 * r['gflops_per_image'] * 1e9 *
            (3 if r['mode'] == 'train' else 1) * r['images_per_s'] /
            results['matmul_flops_per_s'][r['dtype']])
        assert r['peak_rss_mib'] is None  # measured with isolate=True
        assert r['weights_mib'] > 0
        assert r['compile'] is None
        assert isinstance(r['backends'], dict)
        # The CPU's choice of the fast path attends without SDPA.
        assert r['sdpa_backends'] == {}
        # Refiner blocks say how they refined: the fused op for the fast
        # path's inference (frozen norms), whole maps for its training.
        backends = r['refined_attention_backends']
        if r['model'].startswith('refiner'):
            expected = ('reference' if r['impl'] == 'reference' else
                        'ext' if r['mode'] == 'inference' else 'explicit')
            assert list(backends) == [expected], r
        else:
            assert backends == {}
        # The modules of the reference ran only the reference.
        if r['impl'] == 'reference':
            assert all(names == ['reference']
                       for names in r['backends'].values()), r
    assert set(results['matmul_flops_per_s']) == {'fp32', 'bf16'}
    assert all(f > 1e9 for f in results['matmul_flops_per_s'].values())
    table = markdown_table(results)
    assert 'fast % matmul' in table and 'GFLOP/s, bf16' in table
    rows = speedups(results)
    assert len(rows) == len(TINY_BUILDERS) * 2 * 2
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
    # The agreement check (reference, fast), then per dtype and impl a
    # forward for the SDPA backends and a step: each begins from the
    # initial weights.
    assert len(seen) == 10
    for weights in seen[1:]:
        assert torch.equal(weights, seen[0])


class _Toy(nn.Module):

    def __init__(self, impl, offset):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.offset = offset if impl == 'reference' else 0.

    def forward(self, x):
        return (self.conv(x) + self.offset, )


def test_a_mismatch_is_recorded_and_the_run_goes_on(tmp_path):
    builders = {
        'bad': lambda impl: _Toy(impl, 1e-2),
        'good': lambda impl: _Toy(impl, 0.)
    }
    with pytest.raises(ImplementationMismatch, match='relative error'):
        check_agreement(builders['bad']('reference'), builders['bad']('fast'),
                        Setting.parse('16x16:1'), torch.device('cpu'))
    prefix = str(tmp_path / 'out' / 'bench')
    results = run_benchmark(['bad', 'good'], [Setting.parse('16x16:1')],
                            modes=('inference', 'train'),
                            dtypes=('fp32', ),
                            device='cpu',
                            warmup=0,
                            repeats=1,
                            builders=builders,
                            log=_quiet,
                            out_prefix=prefix)
    records = results['records']
    assert [(r['model'], r['mode'], r['impl'], r['status'])
            for r in records] == [
                ('bad', 'inference', 'reference', 'mismatch'),
                ('bad', 'inference', 'fast', 'mismatch'),
                ('bad', 'train', 'reference', 'mismatch'),
                ('bad', 'train', 'fast', 'mismatch'),
                ('good', 'inference', 'reference', 'ok'),
                ('good', 'inference', 'fast', 'ok'),
                ('good', 'train', 'reference', 'ok'),
                ('good', 'train', 'fast', 'ok'),
            ]
    assert 'relative error' in records[0]['error']
    assert records[0]['agreement_rel_error'] > 1e-4
    assert failed_records(results) == records[:4]
    # Written as measured: the files hold both models.
    with open(f'{prefix}.json') as f:
        assert json.load(f)['records'] == records
    table = open(f'{prefix}.md').read()
    assert table == markdown_table(results)
    assert ('| bad | 16x16:1 | inference | fp32 | - | mismatch | mismatch |'
            in table)
    assert '| good | 16x16:1 | train | fp32 |' in table
    assert '- bad 16x16:1 (4 records): mismatch: output 0' in table


class _Interrupted(nn.Module):
    """A toy whose training forward stands for a run stopped by a time
    limit."""

    def __init__(self, impl):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x):
        if self.training:
            raise KeyboardInterrupt
        return (self.conv(x), )


def test_records_are_written_as_measured(tmp_path):
    prefix = str(tmp_path / 'bench')
    with pytest.raises(KeyboardInterrupt):
        run_benchmark(['toy'], [Setting.parse('16x16:1')],
                      modes=('inference', 'train'),
                      dtypes=('fp32', ),
                      impls=('reference', ),
                      device='cpu',
                      warmup=0,
                      repeats=1,
                      builders={'toy': _Interrupted},
                      log=_quiet,
                      out_prefix=prefix)
    with open(f'{prefix}.json') as f:
        results = json.load(f)
    assert [(r['mode'], r['status'])
            for r in results['records']] == [('inference', 'ok')]
    assert open(f'{prefix}.md').read() == markdown_table(results)
    assert not osp.exists(f'{prefix}.png')  # drawn at the end


def test_a_failing_build_or_step_is_recorded():
    """Errors other than a mismatch are recorded per model (build) or per
    record (a call), with the reason."""

    class Failing(_Toy):

        def forward(self, x):
            if self.training:
                raise ValueError('no training for this one')
            return super().forward(x)

    def unbuildable(impl):
        raise RuntimeError('cannot build')

    results = run_benchmark(['broken', 'failing'], [Setting.parse('16x16:1')],
                            modes=('inference', 'train'),
                            dtypes=('fp32', ),
                            impls=('fast', ),
                            device='cpu',
                            warmup=0,
                            repeats=1,
                            builders={
                                'broken': unbuildable,
                                'failing': lambda impl: Failing(impl, 0.)
                            },
                            log=_quiet)
    statuses = [(r['model'], r['mode'], r['status'], r.get('error'))
                for r in results['records']]
    assert statuses == [
        ('broken', 'inference', 'error', 'build: RuntimeError: cannot build'),
        ('broken', 'train', 'error', 'build: RuntimeError: cannot build'),
        ('failing', 'inference', 'ok', None),
        ('failing', 'train', 'error',
         'train fp32: ValueError: no training for this one'),
    ]
    assert len(failed_records(results)) == 3


@pytest.mark.skipif(
    not hasattr(torch.nn, 'attention'),
    reason=f'torch {torch.__version__} has no torch.nn.attention.sdpa_kernel')
def test_sdpa_backends_counts_each_attention_once():
    q = torch.randn(2, 2, 16, 8, requires_grad=True)

    def attend():
        for _ in range(3):
            F.scaled_dot_product_attention(q, q, q).sum().backward()
        with torch.nn.attention.sdpa_kernel(
                torch.nn.attention.SDPBackend.MATH):
            F.scaled_dot_product_attention(q, q, q)
        q @ q.transpose(-2, -1)

    # Backward ops, and the ops inside the math backend, do not count.
    assert sdpa_backends(attend) == {'flash_cpu': 3, 'math': 1}
    assert sdpa_backends(lambda: q @ q.transpose(-2, -1)) == {}


@pytest.mark.parametrize('model', ['scalablevit-tiny', 'groupmixformer-tiny'])
def test_records_name_the_sdpa_backends(model, monkeypatch):
    """With the GPU's choices (SDPA in the fast path) forced onto the CPU,
    every record of ScalableViT's fast path counts one SDPA call per
    attention; GroupMixFormer's factorised attention runs none."""
    monkeypatch.setattr(dispatch, 'prefers_one_launch', lambda facts: True)
    results = run_benchmark([model], [Setting.parse('64x48:2')],
                            modes=('inference', 'train'),
                            dtypes=('fp32', ),
                            device='cpu',
                            warmup=0,
                            repeats=1,
                            count_model_flops=False,
                            builders=TINY_BUILDERS,
                            log=_quiet)
    by_impl = {}
    for r in results['records']:
        by_impl.setdefault(r['impl'], []).append(r['sdpa_backends'])
    assert by_impl['reference'] == [{}, {}]  # explicit softmax
    inference, train = by_impl['fast']
    assert inference == train
    table = markdown_table(results)
    attentions = sum(
        isinstance(m, (ScalableSelfAttention, InteractiveWindowAttention))
        for m in TINY_BUILDERS[model]('fast').modules())
    if not attentions:
        assert inference == {} and 'SDPA' not in table
        return
    assert sum(inference.values()) == attentions
    assert set(inference) <= {'flash_cpu', 'math'}
    assert '| fast SDPA |' in table and 'reference SDPA' not in table
    assert f'| {records.backends_text(inference)} |' in table


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


def test_records_name_the_dispatched_backends(monkeypatch):
    """``backends`` holds what the layers' dispatch says each module ran,
    for the model timed; an unmeasured record holds none."""
    fake = types.ModuleType(dispatch.__name__)
    fake.backends_used = lambda model: {
        type(model).__name__: ['torch', 'extension']
    }
    monkeypatch.setitem(sys.modules, fake.__name__, fake)

    def unbuildable(impl):
        raise RuntimeError('cannot build')

    results = run_benchmark(['toy', 'broken'], [Setting.parse('16x16:1')],
                            modes=('inference', ), dtypes=('fp32', ),
                            device='cpu', warmup=0, repeats=1,
                            count_model_flops=False,
                            builders={
                                'toy': lambda impl: _Toy(impl, 0.),
                                'broken': unbuildable
                            },
                            log=_quiet)
    assert [(r['model'], r['impl'], r['status'], r['backends'])
            for r in results['records']] == [
                ('toy', 'reference', 'ok', {'_Toy': ['extension', 'torch']}),
                ('toy', 'fast', 'ok', {'_Toy': ['extension', 'torch']}),
                ('broken', 'reference', 'error', {}),
                ('broken', 'fast', 'error', {}),
            ]


def test_compiled_impls_are_refused(capsys):
    """The fast path under torch.compile is a compile mode, not an
    implementation; the message names the option."""
    with pytest.raises(ValueError, match="compile_modes=\\('default', \\)"):
        run_benchmark(['toy'], [Setting.parse('16x16:1')],
                      impls=('reference', 'compile'), device='cpu',
                      builders={'toy': lambda impl: _Toy(impl, 0.)})
    with pytest.raises(ValueError, match='unknown compile mode'):
        run_benchmark(['toy'], [Setting.parse('16x16:1')],
                      compile_modes=('max-autotune', ), device='cpu',
                      builders={'toy': lambda impl: _Toy(impl, 0.)})
    tool = _load_tool()
    for impl, option in [('compile', '--compile default'),
                         ('graphs', '--compile reduce-overhead')]:
        with pytest.raises(SystemExit):
            tool.parse_args(['--impls', 'fast', impl, '--out', 'x'])
        assert option in capsys.readouterr().err
    args = tool.parse_args([
        '--device', 'cpu', '--compile', 'default', 'reduce-overhead',
        '--out', 'x'
    ])
    assert args.compile == ['default', 'reduce-overhead']
    assert args.impls == ['reference', 'fast']


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


def _load_tool():
    spec = importlib.util.spec_from_file_location('benchmark_tool', TOOL)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    return tool


def test_cli_exits_non_zero_after_a_mismatch(tmp_path, monkeypatch, capsys):
    tool = _load_tool()
    toys = {
        'bad': lambda impl: _Toy(impl, 1e-2),
        'good': lambda impl: _Toy(impl, 0.)
    }
    monkeypatch.setattr(tool, 'named_models', lambda: toys)
    monkeypatch.setattr(runner, 'named_models', lambda: toys)
    prefix = str(tmp_path / 'cli')
    status = tool.main([
        '--device', 'cpu', '--models', 'all', '--settings', '16x16:1',
        '--modes', 'inference', '--dtypes', 'fp32', '--warmup', '0',
        '--repeats', '1', '--out', prefix
    ])
    assert status == 1
    assert '2 records not measured' in capsys.readouterr().err
    with open(f'{prefix}.json') as f:
        records = json.load(f)['records']
    assert [(r['model'], r['status'])
            for r in records] == [('bad', 'mismatch'), ('bad', 'mismatch'),
                                  ('good', 'ok'), ('good', 'ok')]
    assert osp.isfile(f'{prefix}.png')
    with pytest.raises(SystemExit):
        tool.parse_args(['--help'])
    assert '--isolate' in capsys.readouterr().out


def _isolated_fast_run(*settings):
    """GroupMixFormer-M's fast fp32 inference, once, each record in a fresh
    process."""
    return run_benchmark(['groupmixformer-m'],
                         [Setting.parse(s) for s in settings],
                         modes=('inference', ),
                         dtypes=('fp32', ),
                         impls=('fast', ),
                         device='cpu',
                         warmup=0,
                         repeats=1,
                         count_model_flops=False,
                         isolate=True,
                         log=_quiet)


def test_isolated_records_measure_peak_cpu_memory(tmp_path):
    # One fresh process (about 10 s: imports) for the fast path's record.
    results = _isolated_fast_run('64x64:1')
    assert results['isolate']
    [record] = results['records']
    assert record['status'] == 'ok', record
    assert record['images_per_s'] > 0
    assert record['sdpa_backends'] == {}
    # fp32 parameters and a few buffers.
    params = record['params']
    assert params * 4 / 2**20 <= record['weights_mib'] < params * 5 / 2**20
    assert 0 < record['base_rss_mib'] <= record['peak_rss_mib']
    assert record['peak_rss_mib'] > record['weights_mib']
    assert record['peak_rss_mib'] < 64 * 1024  # MiB, not KiB or bytes
    table = markdown_table(results)
    assert '| weights MiB | fast peak RSS MiB |' in table
    assert 'Peak RSS: resident high-water mark of a fresh process' in table


def _child(code):
    """A fresh process that runs ``code`` with the task's arguments."""
    return lambda *args: [sys.executable, '-c', code, *args]


def test_isolated_failures_are_recorded(monkeypatch):
    monkeypatch.setattr(isolation, 'child_command',
                        _child('raise SystemExit(3)'))
    results = _isolated_fast_run('64x64:1')
    [record] = results['records']
    assert record['status'] == 'error'
    assert 'exited with 3' in record['error']
    assert record['backends'] == {}
    # A crash in the agreement check (the reference at a size it cannot
    # hold) is recorded against that size; the run goes on to the next.
    monkeypatch.setattr(
        isolation, 'child_command',
        _child('import os, signal, sys\n'
               'if "96x96" in sys.argv[2]: '
               'os.kill(os.getpid(), signal.SIGSEGV)\n'
               'from mmscalable.analysis.benchmark.isolation import main\n'
               'main()\n'))
    results = _isolated_fast_run('96x96:1', '64x64:1')
    crashed, measured = results['records']
    assert (crashed['setting'], crashed['status']) == ('96x96:1', 'error')
    assert 'crashed (SIGSEGV)' in crashed['error']
    assert (measured['setting'], measured['status']) == ('64x64:1', 'ok')
    assert measured['agreement_rel_error'] < 1e-4
    with pytest.raises(ValueError, match='not builders'):
        run_benchmark(['toy'], [Setting.parse('16x16:1')],
                      device='cpu',
                      builders={'toy': lambda impl: _Toy(impl, 0.)},
                      isolate=True)


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
def test_compiled_column_on_cpu():
    # The column, not each model's compilation (which takes minutes on two
    # cores for the others): the quickest model to compile.
    results = run_benchmark(
        ['refiner-tiny'], [Setting.parse('64x64:2')],
        modes=('inference', 'train'), dtypes=('fp32', ),
        compile_modes=('default', ), device='cpu', warmup=1, repeats=1,
        count_model_flops=False, builders=TINY_BUILDERS, log=_quiet)
    compiled = [r for r in results['records'] if r['compile'] == 'default']
    assert [(r['impl'], r['status']) for r in compiled] == [('fast', 'ok'),
                                                            ('fast', 'ok')]
    assert all(r['compile_speedup'] for r in speedups(results))


@pytest.mark.slow
def test_cuda_graphs_column():
    # On the CPU, mode='reduce-overhead' compiles without graphs; the column
    # and its ratio are what a GPU run fills the same way.
    model = next(iter(TINY_BUILDERS))
    results = run_benchmark(
        [model], [Setting.parse('64x64:2')],
        modes=('inference', ), dtypes=('fp32', ),
        compile_modes=('reduce-overhead', ), device='cpu', warmup=1,
        repeats=1, count_model_flops=False, builders=TINY_BUILDERS,
        log=_quiet)
    graphs = [
        r for r in results['records'] if r['compile'] == 'reduce-overhead'
    ]
    assert [(r['impl'], r['status']) for r in graphs] == [('fast', 'ok')]
    assert all(r['graphs_speedup'] for r in speedups(results))
    assert 'graphs / ref' in markdown_table(results)


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
