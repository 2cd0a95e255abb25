"""mmengine checkpoints load on torch >= 2.6; arbitrary pickles do not."""
import argparse
from collections import OrderedDict

import numpy as np
import pytest
import torch
from mmengine.logging import HistoryBuffer
from mmengine.runner.checkpoint import CheckpointLoader

import mmscalable  # noqa: F401  (registers the loaders)
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
