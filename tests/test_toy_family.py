"""A fourth backbone family, defined in this file alone, passes the
family-wide tests.

Loaded as a pytest plugin (``-p test_toy_family``), this module registers
the family ``toyformer`` (its backbone, attention, key rules, configs and
metafile, and the contract its tiny model keeps) before the tests are
collected. The test below runs the family-wide test files that way, and
checks that each of them ran cases of the toy family and that all passed:
a family is one entry of ``mmscalable.models.families`` and, for the tests,
one ``Contract``; nothing else names the three families.
"""
import os
import os.path as osp
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET

import pytest
import torch
import torch.nn as nn
from mmcv.cnn import ConvModule
from mmengine.model import BaseModule, ModuleList

NAME = 'toyformer'
ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
# The test files that run every family of the table.
FAMILY_WIDE_TESTS = [
    'tests/test_models/test_backbone_contract.py',
    'tests/test_models/test_official_converter.py',
    'tests/test_models/test_model_hub.py',
    'tests/test_models/test_export.py',
    'tests/test_models/test_dispatch.py',
    'tests/test_analysis/test_benchmark.py',
    'tests/test_analysis/test_flops.py',
    'tests/test_configs.py',
]


class ToyAttention(BaseModule):
    """A gate over channels, computed two ways as the real attentions are.

    Args:
        embed_dims (int): Channels.
        impl (str): ``'fast'`` or ``'reference'``. Defaults to ``'fast'``.
        init_cfg (dict, optional): Initialization config. Defaults to None.
    """

    def __init__(self, embed_dims, impl='fast', init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        if impl not in ('fast', 'reference'):
            raise ValueError(f'impl must be fast or reference, got {impl!r}')
        self.impl = impl
        self.gate = nn.Conv2d(embed_dims, embed_dims, 1)

    def forward(self, x):
        from mmscalable.models.layers.dispatch import select_backend
        gate = self.gate(x)
        if select_backend(self, x) == 'reference':
            return x / (1 + torch.exp(-gate))
        return x * torch.sigmoid(gate)


def _toy_backbone_class():
    # Defined on first use: the backbones' base class imports mmscalable.
    from mmscalable.models.backbones.base import (BaseBackbone,
                                                  check_image_input,
                                                  checkpoint_if, parse_arch,
                                                  parse_out_indices)

    class ToyFormer(BaseBackbone):
        """Stride-2 conv stages, each followed by a :class:`ToyAttention`.

        Args:
            arch (str | dict): ``'s'``/``'small'`` or ``'b'``/``'base'``,
                or a dict with ``embed_dims``. Defaults to ``'s'``.
            in_channels (int): Input channels. Defaults to 3.
            out_indices (Sequence[int]): Stages whose outputs are returned.
                Defaults to (0, 1, 2).
            attn_impl (str): ``'fast'`` or ``'reference'``. Defaults to
                ``'fast'``.
            drop_path_rate (float): Unused; the configs set it. Defaults to
                0.
            frozen_stages (int): See ``BaseBackbone``. Defaults to -1.
            norm_eval (bool): See ``BaseBackbone``. Defaults to False.
            with_cp (bool): See ``BaseBackbone``. Defaults to False.
            init_cfg (dict, optional): See ``BaseBackbone``. Defaults to
                None.
        """
        num_stages = 3
        arch_zoo = {
            **dict.fromkeys(['s', 'small'], {'embed_dims': [8, 16, 24]}),
            **dict.fromkeys(['b', 'base'], {'embed_dims': [16, 32, 48]}),
        }

        def __init__(self,
                     arch='s',
                     in_channels=3,
                     out_indices=(0, 1, 2),
                     attn_impl='fast',
                     drop_path_rate=0.,
                     frozen_stages=-1,
                     norm_eval=False,
                     with_cp=False,
                     init_cfg=None):
            super().__init__(
                frozen_stages=frozen_stages,
                norm_eval=norm_eval,
                with_cp=with_cp,
                init_cfg=init_cfg)
            self.arch = parse_arch(arch, self.arch_zoo, ['embed_dims'],
                                   self.num_stages, 'ToyFormer')
            self.embed_dims = self.arch['embed_dims']
            self.in_channels = in_channels
            self.out_indices = parse_out_indices(out_indices,
                                                 self.num_stages)
            self.stages = ModuleList()
            for dims in self.embed_dims:
                self.stages.append(
                    nn.Sequential(
                        ConvModule(
                            in_channels,
                            dims,
                            3,
                            stride=2,
                            padding=1,
                            norm_cfg=dict(type='BN')),
                        ToyAttention(dims, impl=attn_impl)))
                in_channels = dims
            self._freeze_stages()

        def _frozen_modules(self, i):
            return [self.stages[i]]

        def forward(self, x):
            check_image_input(x, self.in_channels, 2**self.num_stages,
                              type(self).__name__)
            outs = []
            for i, stage in enumerate(self.stages):
                x = checkpoint_if(self.with_cp, stage, x)
                if i in self.out_indices:
                    outs.append(x.contiguous())
            return tuple(outs)

    return ToyFormer


# The official checkpoints' names: `toy_stages.*` for `backbone.stages.*`.
def is_official_toy(state_dict):
    return any(key.startswith('toy_stages.') for key in state_dict)


def toy_official_to_mmcls(state_dict):
    return {
        key.replace('toy_stages.', 'backbone.stages.', 1): value
        for key, value in state_dict.items()
    }


def toy_mmcls_to_official(state_dict):
    return {
        key.replace('backbone.stages.', 'toy_stages.', 1): value
        for key, value in state_dict.items()
    }


CONFIG = """\
_base_ = ['{base}']
model = dict(
    backbone=dict(
        _delete_=True, type='mmscalable.ToyFormer', arch='{arch}',
        out_indices=(2, )),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        _delete_=True, type='LinearClsHead', num_classes=1000,
        in_channels={channels},
        loss=dict(type='CrossEntropyLoss')))
"""
METAFILE = """\
Collections:
  - Name: ToyFormer
    Metadata:
      Architecture: [ToyAttention]
Models:
{models}
"""
METAFILE_MODEL = """\
  - Name: {name}
    In Collection: ToyFormer
    Config: {config}
    Metadata:
      Parameters: null
    Results:
      - Task: Image Classification
        Dataset: ImageNet-1k
        Metrics:
          Top 1 Accuracy: 1.0
    Weights: null
    Converted From:
      Code: https://github.com/example/toyformer
"""


def _write_configs(folder, backbone_class):
    """A classification config per variant, inheriting ScalableViT-S's
    data and schedule, and the metafile listing them."""
    base = osp.join(ROOT, 'configs', 'scalablevit',
                    'scalablevit-s_8xb128_in1k.py')
    models = []
    for arch in ('s', 'b'):
        name = f'{NAME}-{arch}_8xb128_in1k'
        config = osp.join(folder, f'{name}.py')
        channels = backbone_class.arch_zoo[arch]['embed_dims'][-1]
        with open(config, 'w') as f:
            f.write(CONFIG.format(base=base, arch=arch, channels=channels))
        models.append(METAFILE_MODEL.format(name=name, config=config))
    with open(osp.join(folder, 'metafile.yml'), 'w') as f:
        f.write(METAFILE.format(models=''.join(models)))


def _contract():
    from tiny_backbones import Contract

    def out_shapes(h, w):
        shapes = []
        for dims in (4, 8, 12):
            h, w = -(-h // 2), -(-w // 2)
            shapes.append((dims, h, w))
        return shapes

    return Contract(
        min_size=8,
        out_shapes=out_shapes,
        frozen=lambda i: [f'stages.{i}'],
        num_stages=3)


def register_toy_family():
    """Register everything the toy family is; returns its config folder."""
    import tiny_backbones

    from mmscalable.models.families import BackboneFamily, register_family
    from mmscalable.models.layers.dispatch import backend_rule
    from mmscalable.registry import MODELS
    backbone_class = _toy_backbone_class()
    MODELS.register_module(name='ToyFormer', module=backbone_class)
    MODELS.register_module(name='ToyAttention', module=ToyAttention)
    backend_rule('ToyAttention')(lambda module, facts: 'explicit')
    folder = osp.join(tempfile.mkdtemp(prefix='toy-family-'), NAME)
    os.makedirs(folder)
    _write_configs(folder, backbone_class)
    register_family(
        BackboneFamily(
            name=NAME,
            title='ToyFormer',
            backbone='ToyFormer',
            attention='ToyAttention',
            model_prefix=NAME,
            repository='example/toyformer',
            is_official=is_official_toy,
            official_to_mmcls=toy_official_to_mmcls,
            mmcls_to_official=toy_mmcls_to_official,
            marker='toy_stages.*',
            tiny_arch=dict(embed_dims=[4, 8, 12]),
            config_folder=folder))
    tiny_backbones.CONTRACTS[NAME] = _contract()
    return folder


def pytest_configure(config):
    """As a plugin: the toy family exists before the tests are collected."""
    register_toy_family()


def _passed_cases(junit_xml):
    """{test file: number of passed cases} of a junit report."""
    passed = {}
    for case in ET.parse(junit_xml).getroot().iter('testcase'):
        if any(child.tag in ('failure', 'error', 'skipped')
               for child in case):
            continue
        module = case.get('classname', '').rsplit('.', 1)[-1]
        passed[module] = passed.get(module, 0) + 1
    return passed


@pytest.mark.slow
def test_toy_family_passes_the_family_wide_tests(tmp_path):
    report = str(tmp_path / 'report.xml')
    env = dict(os.environ, PYTHONPATH=osp.join(ROOT, 'tests'))
    result = subprocess.run(
        [
            sys.executable, '-m', 'pytest', *FAMILY_WIDE_TESTS, '-p',
            'test_toy_family', '-k', NAME, '-q', '-p', 'no:cacheprovider',
            '-p', 'no:xdist', f'--junitxml={report}'
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True)
    assert result.returncode == 0, result.stdout[-6000:]
    passed = _passed_cases(report)
    for path in FAMILY_WIDE_TESTS:
        module = osp.splitext(osp.basename(path))[0]
        assert passed.get(module, 0) > 0, (
            f'{path} ran no case of the toy family', passed)
