"""mmscalable.compat: mmengine checkpoints load on torch >= 2.6 and
arbitrary pickles do not; the version check and the import leave the rest
of the process alone."""
import argparse
import importlib.metadata
import os.path as osp
import subprocess
import sys
import warnings
from collections import OrderedDict

import numpy as np
import pytest
import torch
from mmengine.logging import HistoryBuffer
from mmengine.runner.checkpoint import CheckpointLoader

import mmscalable
from mmscalable import compat, torch_compat
from mmscalable.compat import safe_torch_load


def runner_like_checkpoint():
    buffer = HistoryBuffer()
    buffer.update(0.5)
    return {
        'meta': {'epoch': 3, 'seed': np.int64(7), 'dataset_meta': {
            'classes': ('a', 'b'), 'palette': [(1, 2, 3)]}},
        'state_dict': OrderedDict(w=torch.randn(2, 2)),
        'message_hub': {'log_scalars': {'train/loss': buffer},
                        'runtime_info': {'lr': np.array([1e-3, 2e-3]),
                                         'scale': np.float32(2.0)}},
    }


@pytest.mark.skipif(
    torch_compat.TORCH_RELEASE < (2, 6),
    reason=f'torch {torch.__version__} loads pickles with a bare torch.load '
    '(weights_only=True is the default from torch 2.6)')
def test_mmengine_checkpoint_loads_through_checkpoint_loader(tmp_path):
    path = tmp_path / 'epoch_3.pth'
    saved = runner_like_checkpoint()
    torch.save(saved, path)
    with pytest.raises(Exception):  # what a bare torch.load does now
        torch.load(path)
    loaded = CheckpointLoader.load_checkpoint(str(path), map_location='cpu')
    torch.testing.assert_close(loaded['state_dict']['w'],
                               saved['state_dict']['w'])
    assert loaded['meta']['seed'] == 7
    np.testing.assert_array_equal(
        loaded['message_hub']['runtime_info']['lr'], [1e-3, 2e-3])
    assert loaded['message_hub']['log_scalars']['train/loss'].current() == 0.5


def test_official_training_checkpoint_with_args_loads(tmp_path):
    path = tmp_path / 'official.pth'
    torch.save({'model': {'w': torch.ones(1)},
                'args': argparse.Namespace(lr=1e-3)}, path)
    assert safe_torch_load(str(path))['args'].lr == 1e-3


@pytest.mark.parametrize('payload', [eval, print, torch.hub.load])
def test_code_in_a_checkpoint_is_refused_and_named(tmp_path, payload):
    path = tmp_path / 'evil.pth'
    torch.save({'state_dict': {}, 'x': payload}, path)
    with pytest.raises(Exception, match='not known to hold only data'):
        CheckpointLoader.load_checkpoint(str(path))


def test_missing_and_corrupt_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match='nowhere.pth'):
        CheckpointLoader.load_checkpoint(str(tmp_path / 'nowhere.pth'))
    path = tmp_path / 'truncated.pth'
    torch.save({'w': torch.randn(100)}, path)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(RuntimeError, match='truncated.pth'):
        CheckpointLoader.load_checkpoint(str(path))


def test_import_applies_the_fixes_once_and_they_are_idempotent():
    local = CheckpointLoader._schemes['']
    assert local is compat._load_from_local
    compat.apply_fixes()
    compat.apply_fixes()
    assert CheckpointLoader._schemes[''] is compat._load_from_local
    from mmengine.config import config as config_module
    assert config_module.get_installed_path('mmscalable') == \
        compat.PACKAGE_DIR


@pytest.mark.parametrize('package,version', [('mmcv', '2.2.0'),
                                             ('mmcv', '1.7.2'),
                                             ('mmengine', '1.0.0rc0'),
                                             ('mmengine', '0.9.1')])
def test_out_of_range_dependency_is_refused_by_name(monkeypatch, package,
                                                    version):
    real = importlib.metadata.version
    monkeypatch.setattr(
        importlib.metadata, 'version', lambda name: version
        if name == package else real(name))
    low, high = mmscalable.SUPPORTED_VERSIONS[package]
    with pytest.raises(ImportError) as info:
        mmscalable.check_dependency_versions()
    message = str(info.value)
    assert f'{package} {version} is installed' in message
    assert f'{package}>={low},<{high}' in message


def test_installed_stack_is_in_range():
    mmscalable.check_dependency_versions()
    for package, (low, high) in mmscalable.SUPPORTED_VERSIONS.items():
        found = mmscalable._release(importlib.metadata.version(package))
        assert mmscalable._release(low) <= found < mmscalable._release(high)


def test_import_installs_no_warnings_filter():
    """No module of the package adds a warnings filter when imported (the
    dependencies it imports may)."""
    code = (
        'import importlib.util, os, sys, warnings\n'
        'package = os.path.join(os.path.dirname(os.path.abspath(\n'
        '    importlib.util.find_spec("mmscalable").origin)))\n'
        'callers = []\n'
        'def recorded(add):\n'
        '    def add_filter(*args, **kwargs):\n'
        '        callers.append(sys._getframe(1).f_code.co_filename)\n'
        '        return add(*args, **kwargs)\n'
        '    return add_filter\n'
        'warnings.filterwarnings = recorded(warnings.filterwarnings)\n'
        'warnings.simplefilter = recorded(warnings.simplefilter)\n'
        'import mmscalable, mmscalable.models, mmscalable.ops\n'
        'import mmscalable.engine, mmscalable.analysis.benchmark\n'
        'ours = [c for c in callers if c.startswith(package)]\n'
        'assert not ours, ours\n')
    result = subprocess.run([sys.executable, '-c', code],
                            capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stderr[-2000:]


def test_ops_module_runs_without_runpy_warning():
    result = subprocess.run(
        [sys.executable, '-W', 'error::RuntimeWarning', '-m',
         'mmscalable.ops'],
        capture_output=True,
        text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "'available'" in result.stdout


def test_runtime_requirements_declare_the_checked_ranges():
    """install_requires (requirements/runtime.txt) and the import-time check
    name the same ranges."""
    path = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))),
                    'requirements', 'runtime.txt')
    with open(path) as f:
        lines = [line.split('#')[0].strip() for line in f]
    for package, (low, high) in mmscalable.SUPPORTED_VERSIONS.items():
        assert f'{package}>={low},<{high}' in lines


def test_tools_quiet_the_stacks_deprecation_warnings():
    from mmscalable.compat import quiet_third_party_deprecations
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        quiet_third_party_deprecations()
        warnings.warn('pkg_resources is deprecated as an API. See ...',
                      UserWarning)
        warnings.warn('a warning of our own', UserWarning)
    assert [str(w.message) for w in caught] == ['a warning of our own']
