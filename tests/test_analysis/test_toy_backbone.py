"""A backbone defined outside the package goes through the benchmark and the
FLOPs counting: nothing there names the three families."""
import os.path as osp
import uuid

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModule
from mmengine.registry import DefaultScope

from mmscalable.analysis import flops
from mmscalable.analysis.benchmark import (Setting, arch_builders,
                                           markdown_table, run_benchmark,
                                           write_outputs)
from mmscalable.registry import MODELS


class ToyConvNet(BaseModule):
    """A few strided conv stages; ``attn_impl`` computes the activation two
    ways, as the real backbones compute attention."""
    arch_zoo = {
        **dict.fromkeys(['s', 'small'], {'channels': [8, 16, 24]}),
        **dict.fromkeys(['b', 'base'], {'channels': [16, 32, 48]}),
    }

    def __init__(self,
                 arch='s',
                 out_indices=(0, 1, 2),
                 attn_impl='fast',
                 drop_path_rate=0.,
                 init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        if attn_impl not in ('fast', 'reference'):
            raise ValueError(f'attn_impl {attn_impl!r}')
        channels = (self.arch_zoo[arch] if isinstance(arch, str) else
                    arch)['channels']
        self.attn_impl = attn_impl
        self.out_indices = out_indices
        self.stages = nn.ModuleList()
        for in_channels, out_channels in zip([3] + channels[:-1], channels):
            self.stages.append(
                nn.Sequential(
                    nn.Conv2d(in_channels, out_channels, 3, 2, 1),
                    nn.BatchNorm2d(out_channels)))

    def forward(self, x):
        outs = []
        for i, stage in enumerate(self.stages):
            x = stage(x)
            x = (x * torch.sigmoid(x)
                 if self.attn_impl == 'reference' else F.silu(x))
            if i in self.out_indices:
                outs.append(x)
        return tuple(outs)


@pytest.fixture
def toy_type():
    """``ToyConvNet`` registered in the ``mmscalable`` MODELS registry under
    a fresh name, removed afterwards."""
    name = f'ToyConvNet{uuid.uuid4().hex[:8]}'
    MODELS.register_module(name=name, module=ToyConvNet)
    yield name
    MODELS._module_dict.pop(name)


def _quiet(_):
    pass


def test_benchmark(toy_type, tmp_path):
    builders = arch_builders(toy_type, 'toy')
    assert list(builders) == ['toy-s', 'toy-b']
    # As after a whole detector was benchmarked: another default scope.
    with DefaultScope.overwrite_default_scope('mmdet'):
        results = run_benchmark(['toy-s'], [Setting.parse('32x32:1')],
                                modes=('inference', 'train'),
                                dtypes=('fp32', ), device='cpu', warmup=0,
                                repeats=1, builders=builders, log=_quiet)
    records = results['records']
    assert [(r['mode'], r['impl']) for r in records] == [
        ('inference', 'reference'), ('inference', 'fast'),
        ('train', 'reference'), ('train', 'fast')]
    for r in records:
        assert r['status'] == 'ok', r
        assert r['agreement_rel_error'] < 1e-4
        assert r['gflops_per_image'] > 0
        assert r['params'] == sum(
            p.numel() for p in ToyConvNet('s').parameters())
    paths = write_outputs(results, str(tmp_path / 'toy'))
    assert open(paths[1]).read() == markdown_table(results)
    assert '| toy-s | 32x32:1 | train | fp32 |' in markdown_table(results)


def test_flops(toy_type, tmp_path):
    config = tmp_path / 'toy_cls.py'
    config.write_text(f"""default_scope = 'mmpretrain'
model = dict(
    type='ImageClassifier',
    backbone=dict(type='mmscalable.{toy_type}', arch='s', out_indices=(2, )),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(type='LinearClsHead', num_classes=10, in_channels=24))
""")
    record = flops.count(str(config), (32, 32), 'fvcore')
    backbone = ToyConvNet('s')
    assert record['params'] == sum(
        p.numel() for p in backbone.parameters()) + 24 * 10 + 10
    # The convolutions alone: 3x3 kernels at 16x16, 8x8 and 4x4.
    conv_macs = 9 * (3 * 8 * 16 * 16 + 8 * 16 * 8 * 8 + 16 * 24 * 4 * 4)
    assert conv_macs < record['flops'] < 2 * conv_macs
    assert record['paper_flops'] is None
    row = f'| {osp.basename(str(config))[:-3]} | 32x32 |'
    assert row in flops.markdown_table([record])
