"""mmscalable.torch_compat: the fallbacks for the torch APIs that older
supported releases (torch 2.1 to 2.3) lack, checked on the running torch by
hiding the newer APIs; and the torch range of the import-time check.

The op checks run in a fresh interpreter: the ops are registered with
torch.library when ``mmscalable.ops`` is imported, once per process.
"""
import importlib.metadata
import os.path as osp
import pickle
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

import mmscalable
from ext_marks import requires_ext
from mmscalable import compat, torch_compat
from mmscalable.ops import ext_loader

TESTS_DIR = osp.dirname(osp.abspath(__file__))

# Hides the APIs that torch 2.1 lacks while mmscalable is imported (which
# resolves the fallbacks and registers the ops), then puts them back for
# torch's own use.
WITHOUT_NEW_APIS = f'''
import sys
import torch
import torch.compiler
import torch.library

sys.path.insert(0, {TESTS_DIR!r})
# What mmscalable imports from its dependencies comes first, with the APIs
# there: torch's distributed modules (imported by mmengine's runner) call
# torch.library.register_autograd at import, dynamo imports is_compiling.
import torch._dynamo
import mmcv.cnn
import mmengine.model
import mmengine.runner
import mmpretrain.apis.model

hidden = [(owner, name, getattr(owner, name)) for owner, name in (
    (torch.library, 'register_autograd'), (torch.library, 'register_fake'),
    (torch.compiler, 'is_compiling')) if hasattr(owner, name)]
for owner, name, _ in hidden:
    delattr(owner, name)
import mmscalable.ops
from mmscalable import torch_compat
for owner, name, value in hidden:
    setattr(owner, name, value)
from mmscalable.ops import ext_info, has_compiled_kernel

assert not torch_compat.HAS_REGISTER_AUTOGRAD
assert not torch_compat.HAS_REGISTER_FAKE
info = ext_info()
assert info['available'], info['error']
assert 'mmscalable' in torch_compat._autograd_libraries
'''

OP_CHECKS = {
    'window':
    '''
    from torch.autograd import gradcheck, gradgradcheck
    from mmscalable.ops import (window_partition, window_partition_reference,
                                window_reverse, window_reverse_reference)

    x = torch.randn(2, 5, 7, 3, dtype=torch.float64, requires_grad=True)
    assert has_compiled_kernel(x)
    torch.testing.assert_close(window_partition(x, 3),
                               window_partition_reference(x, 3))
    grad = torch.randn(12, 9, 3, dtype=torch.float64)
    got = torch.autograd.grad((window_partition(x, 3) * grad).sum(), x)
    want = torch.autograd.grad(
        (window_partition_reference(x, 3) * grad).sum(), x)
    torch.testing.assert_close(got, want)
    assert gradcheck(lambda t: window_partition(t, 3), (x, ))
    assert gradgradcheck(lambda t: window_partition(t, 3), (x, ))
    windows = torch.randn(12, 9, 3, dtype=torch.float64, requires_grad=True)
    torch.testing.assert_close(window_reverse(windows, 3, 5, 7),
                               window_reverse_reference(windows, 3, 5, 7))
    assert gradcheck(lambda t: window_reverse(t, 3, 5, 7), (windows, ))
    assert gradgradcheck(lambda t: window_reverse(t, 3, 5, 7), (windows, ))
    # The op itself differentiates, as with torch.library.register_autograd.
    assert gradcheck(
        lambda t: torch.ops.mmscalable.window_partition(t, 3), (x, ))
    ''',
    'group_mix':
    '''
    from torch.autograd import gradcheck
    from op_cases import group_mix_case
    from mmscalable.ops import group_mix_dwconv, group_mix_dwconv_reference

    case = group_mix_case((2, 5, 6), ((3, 5, 7), (2, 3, 3)))
    input, weight, bias, kernel_sizes, group_channels = case
    args = [input.detach().requires_grad_(), weight.requires_grad_(),
            bias.requires_grad_()]
    assert has_compiled_kernel(args[0])

    def conv(input, weight, bias):
        return group_mix_dwconv(input, weight, bias, kernel_sizes,
                                group_channels)

    expected = group_mix_dwconv_reference(*args, kernel_sizes,
                                          group_channels)
    torch.testing.assert_close(conv(*args), expected)
    grad = torch.randn_like(expected)
    got = torch.autograd.grad((conv(*args) * grad).sum(), args)
    want = torch.autograd.grad((expected * grad).sum(), args)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b)
    assert gradcheck(conv, args)
    ''',
    'refined_attention':
    '''
    from torch.autograd import gradcheck
    from op_cases import refined_attention_inputs
    from mmscalable.ops import (fused_refined_attention,
                                refined_attention_reference)

    # Small values keep finite differences away from relu6's kinks.
    args = [(a * 0.3).detach().requires_grad_()
            for a in refined_attention_inputs(1, 2, 4, 3, 2)]
    assert has_compiled_kernel(args[0])
    expected = refined_attention_reference(*args)
    torch.testing.assert_close(fused_refined_attention(*args), expected)
    grad = torch.randn_like(expected)
    got = torch.autograd.grad((fused_refined_attention(*args) * grad).sum(),
                              args)
    want = torch.autograd.grad((expected * grad).sum(), args)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b)
    assert gradcheck(fused_refined_attention, args)
    ''',
}


def run_without_new_apis(code):
    script = WITHOUT_NEW_APIS + textwrap.dedent(code) + '\nprint("checked")\n'
    result = subprocess.run([sys.executable, '-c', script],
                            capture_output=True,
                            text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith('checked')
    return result


@requires_ext
@pytest.mark.parametrize('op', sorted(OP_CHECKS))
def test_ops_differentiate_through_the_autograd_fallback(op):
    """Without torch.library.register_autograd (torch < 2.4) the compiled
    ops compute and differentiate as their references do."""
    run_without_new_apis(OP_CHECKS[op])


@requires_ext
def test_fallbacks_are_reported_and_is_compiling_falls_back_to_dynamo():
    run_without_new_apis('''
    import torch._dynamo
    assert torch_compat.is_compiling is torch._dynamo.is_compiling
    note = info['compile_note']
    assert 'torch.compile and torch.export of the custom ops are ' \\
        'unavailable' in note, note
    assert torch.__version__ in note
    ''')


def test_is_compiling_is_true_only_under_compile():
    def branch(x):
        return x + 1 if torch_compat.is_compiling() else x - 1

    x = torch.zeros(2)
    assert torch.equal(branch(x), x - 1)
    compiled = torch.compile(branch, backend='eager', fullgraph=True)
    assert torch.equal(compiled(x), x + 1)


def test_without_fake_kernels_the_compiler_traces_the_references(
        monkeypatch):
    x = torch.zeros(1, 2, 2, 1)
    monkeypatch.setattr(ext_loader, 'load_ext', lambda: object())
    monkeypatch.setattr(torch_compat, 'is_compiling', lambda: True)
    monkeypatch.setattr(torch_compat, 'HAS_REGISTER_FAKE', True)
    assert ext_loader.has_compiled_kernel(x)
    assert not ext_loader.has_compiled_kernel(x, keep_under_compile=False)
    monkeypatch.setattr(torch_compat, 'HAS_REGISTER_FAKE', False)
    assert not ext_loader.has_compiled_kernel(x)
    monkeypatch.setattr(torch_compat, 'is_compiling', lambda: False)
    assert ext_loader.has_compiled_kernel(x)


def test_compile_note_names_the_missing_api(monkeypatch):
    assert torch_compat.compile_support_note() is None or \
        not torch_compat.HAS_REGISTER_FAKE
    monkeypatch.setattr(torch_compat, 'HAS_REGISTER_FAKE', False)
    note = torch_compat.compile_support_note()
    assert 'torch.library.register_fake' in note
    assert ext_loader.ext_info()['compile_note'] == note


def test_amp_wrapper_steps_without_a_cpu_grad_scaler(monkeypatch):
    """torch < 2.3 has no torch.amp.GradScaler: on the CPU the AMP wrapper
    trains in bfloat16 without loss scaling."""
    from mmscalable.engine import AmpOptimWrapper
    monkeypatch.delattr(torch.amp, 'GradScaler', raising=False)
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    wrapper = AmpOptimWrapper(
        optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
        dtype='bfloat16')
    assert not wrapper.loss_scaler.is_enabled()
    before = model.weight.detach().clone()
    with wrapper.optim_context(model):
        assert torch_compat.is_autocast_enabled('cpu')
        assert torch_compat.get_autocast_dtype('cpu') == torch.bfloat16
        out = model(torch.randn(5, 4))
        assert out.dtype == torch.bfloat16
    wrapper.update_params(out.float().pow(2).mean())
    assert torch.isfinite(model.weight).all()
    assert not torch.equal(model.weight, before)
    assert not torch_compat.is_autocast_enabled('cpu')


def test_disabled_autocast_takes_any_dtype():
    with torch_compat.autocast('cpu', dtype=torch.float32, enabled=False):
        assert not torch_compat.is_autocast_enabled('cpu')
    with torch_compat.autocast('cpu', dtype=torch.bfloat16):
        assert torch.ones(2, 2).matmul(torch.ones(2, 2)).dtype == \
            torch.bfloat16


# Checkpoint loading without torch.serialization.safe_globals (torch < 2.5).


def runner_like_checkpoint():
    from mmengine.logging import HistoryBuffer
    buffer = HistoryBuffer()
    buffer.update(0.5)
    return {
        'meta': {'epoch': 3, 'seed': np.int64(7)},
        'state_dict': {'w': torch.randn(2, 2, dtype=torch.bfloat16)},
        'message_hub': {'log_scalars': {'train/loss': buffer},
                        'runtime_info': {'lr': np.array([1e-3, 2e-3])}},
    }


@pytest.fixture
def without_safe_globals(monkeypatch):
    monkeypatch.setattr(torch_compat, 'HAS_SAFE_GLOBALS', False)


def test_checkpoint_loads_without_safe_globals(tmp_path,
                                               without_safe_globals):
    path = tmp_path / 'epoch_3.pth'
    saved = runner_like_checkpoint()
    torch.save(saved, path)
    for source in (str(path), open(path, 'rb')):
        loaded = compat.safe_torch_load(source, map_location='cpu')
        torch.testing.assert_close(loaded['state_dict']['w'],
                                   saved['state_dict']['w'])
        assert loaded['meta']['seed'] == 7
        np.testing.assert_array_equal(
            loaded['message_hub']['runtime_info']['lr'], [1e-3, 2e-3])
        buffer = loaded['message_hub']['log_scalars']['train/loss']
        assert buffer.current() == 0.5


class _CallsGetattr:
    """Pickles as ``getattr('', 'join')``: a plain unpickler would call
    getattr on whatever the pickle names."""

    def __reduce__(self):
        return getattr, ('', 'join')


@pytest.mark.parametrize('payload', [eval, torch.hub.load, _CallsGetattr()])
def test_code_is_refused_without_safe_globals(tmp_path, payload,
                                              without_safe_globals):
    path = tmp_path / 'evil.pth'
    torch.save({'state_dict': {}, 'x': payload}, path)
    with pytest.raises(pickle.UnpicklingError,
                       match='not known to hold only data'):
        compat.safe_torch_load(str(path))


# The torch range of the import-time check.


def _pretend_torch_version(monkeypatch, version):
    real = importlib.metadata.version
    monkeypatch.setattr(
        importlib.metadata, 'version', lambda name: version
        if name == 'torch' else real(name))


@pytest.mark.parametrize('version', ['2.0.1', '1.13.1+cpu', '2.14.0',
                                     '2.14.0.dev20261101', '3.0.0'])
def test_torch_out_of_range_is_refused(monkeypatch, version):
    _pretend_torch_version(monkeypatch, version)
    with pytest.raises(ImportError) as info:
        mmscalable.check_dependency_versions()
    message = str(info.value)
    assert f'torch {version} is installed' in message
    assert 'torch>=2.1,<2.14' in message


@pytest.mark.parametrize('version', ['2.1.0', '2.1.2+cu121', '2.4.1',
                                     '2.13.0', '2.13.1+cpu'])
def test_torch_in_range_is_accepted(monkeypatch, version):
    _pretend_torch_version(monkeypatch, version)
    mmscalable.check_dependency_versions()
