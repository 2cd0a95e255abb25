"""What every backbone promises, checked on a small model of each family
(``tiny_backbones.py``) and on a toy backbone written against
``BaseBackbone`` alone: input errors, output shapes and layout, gradients,
``with_cp``, ``frozen_stages``, ``norm_eval`` and checkpoint round trips."""
import pytest
import torch
import torch.utils.checkpoint
from mmcv.cnn import ConvModule
from mmengine.model import ModuleList
from tiny_backbones import BACKBONES, CONTRACTS, Contract
from torch.nn.modules.batchnorm import _BatchNorm

from mmscalable.models.backbones.base import (BaseBackbone, check_image_input,
                                              checkpoint_if, parse_out_indices)


class ToyNet(BaseBackbone):
    """Stride-2 conv stages with BatchNorm: the least a backbone writes.

    Args:
        in_channels (int): Input image channels. Defaults to 3.
        channels (Sequence[int]): Output channels of each stage.
            Defaults to (8, 16, 24).
        out_indices (Sequence[int]): Stages whose outputs are returned.
            Defaults to (0, 1, 2).
        frozen_stages (int): See ``BaseBackbone``. Defaults to -1.
        norm_eval (bool): See ``BaseBackbone``. Defaults to False.
        with_cp (bool): See ``BaseBackbone``. Defaults to False.
        init_cfg (dict, optional): See ``BaseBackbone``. Defaults to None.
    """
    num_stages = 3

    def __init__(self,
                 in_channels=3,
                 channels=(8, 16, 24),
                 out_indices=(0, 1, 2),
                 frozen_stages=-1,
                 norm_eval=False,
                 with_cp=False,
                 init_cfg=None):
        super().__init__(
            frozen_stages=frozen_stages,
            norm_eval=norm_eval,
            with_cp=with_cp,
            init_cfg=init_cfg)
        self.in_channels = in_channels
        self.out_indices = parse_out_indices(out_indices, self.num_stages)
        self.stages = ModuleList()
        for out_channels in channels:
            self.stages.append(
                ConvModule(
                    in_channels,
                    out_channels,
                    3,
                    stride=2,
                    padding=1,
                    norm_cfg=dict(type='BN')))
            in_channels = out_channels
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
                outs.append(x)
        return tuple(outs)


def _toy_shapes(h, w):
    shapes = []
    for channels in (8, 16, 24):
        h, w = -(-h // 2), -(-w // 2)
        shapes.append((channels, h, w))
    return shapes


# Each case: a factory taking keyword arguments, and its contract.
CASES = {
    name: (BACKBONES[name], CONTRACTS[name])
    for name in BACKBONES if name in CONTRACTS
}
CASES['toy'] = (ToyNet,
                Contract(
                    min_size=8,
                    out_shapes=_toy_shapes,
                    frozen=lambda i: [f'stages.{i}'],
                    num_stages=3))
FREEZABLE = [name for name, case in CASES.items() if case[1].frozen]


def test_every_family_states_its_contract():
    missing = [name for name in BACKBONES if name not in CONTRACTS]
    assert not missing, (f'families without a Contract in '
                         f'tests/tiny_backbones.py: {missing}')


def build(name, **kwargs):
    factory, contract = CASES[name]
    return factory(**{**contract.kwargs, **kwargs})


def loss_of(outs):
    # Squares: a plain sum after a norm has zero gradient.
    return sum(out.square().mean() for out in outs)


@pytest.mark.parametrize('name', list(CASES))
def test_bad_input_errors(name):
    model = build(name).eval()
    min_size = CASES[name][1].min_size
    with pytest.raises(ValueError, match=r'\(B, C, H, W\)'):
        model(torch.randn(3, 64, 64))
    with pytest.raises(ValueError, match='3 input channels, got 1'):
        model(torch.randn(1, 1, 64, 64))
    for size in ((min_size - 1, 64), (64, min_size - 1)):
        with pytest.raises(
                ValueError,
                match=f"smaller than the backbone's total stride {min_size}"):
            model(torch.randn(1, 3, *size))


@pytest.mark.parametrize('name', list(CASES))
@pytest.mark.parametrize('batch,size', [(2, (67, 93)), (1, (33, 47)),
                                        (1, 'min_size')])
def test_output_shapes_and_layout(name, batch, size):
    contract = CASES[name][1]
    if size == 'min_size':
        size = (contract.min_size, contract.min_size + 5)
    model = build(name).eval()
    with torch.no_grad():
        outs = model(torch.randn(batch, 3, *size))
    expected = [(batch, *shape) for shape in contract.out_shapes(*size)]
    assert isinstance(outs, tuple)
    assert [tuple(o.shape) for o in outs] == expected
    assert all(torch.isfinite(o).all() for o in outs)
    # Contiguous NCHW: mmcv's CPU RoIAlign misreads channels-last maps.
    assert all(o.is_contiguous() for o in outs)


@pytest.mark.parametrize('name', list(CASES))
def test_gradients_reach_every_parameter(name):
    model = build(name).train()
    loss_of(model(torch.randn(2, 3, 64, 96))).backward()
    assert not [n for n, p in model.named_parameters() if p.grad is None]
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.parametrize('name', list(CASES))
@pytest.mark.parametrize('mode', ['train', 'eval'])
def test_with_cp_gives_equal_outputs_and_gradients(name, mode, monkeypatch):
    calls = []
    checkpoint = torch.utils.checkpoint.checkpoint

    def counted(*args, **kwargs):
        calls.append(1)
        return checkpoint(*args, **kwargs)

    monkeypatch.setattr(torch.utils.checkpoint, 'checkpoint', counted)
    plain = build(name)
    checkpointed = build(name, with_cp=True)
    checkpointed.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 64, 64)
    results = []
    for model in (plain, checkpointed):
        model.train(mode == 'train')
        calls.clear()
        # The same stochastic depth draws; the recomputation in backward
        # replays them.
        torch.manual_seed(0)
        outs = model(x)
        loss_of(outs).backward()
        grads = {n: p.grad for n, p in model.named_parameters()}
        results.append((outs, calls[:], grads))
    (outs, calls, grads), (cp_outs, cp_calls, cp_grads) = results
    assert not calls and cp_calls
    for out, cp_out in zip(outs, cp_outs, strict=True):
        torch.testing.assert_close(cp_out, out, rtol=0, atol=0)
    assert list(cp_grads) == list(grads)
    for param_name, grad in grads.items():
        torch.testing.assert_close(
            cp_grads[param_name], grad, rtol=1e-4, atol=1e-6)


def _under(name, prefixes):
    return any(name == p or name.startswith(p + '.') for p in prefixes)


@pytest.mark.parametrize('name', FREEZABLE)
def test_frozen_stages(name):
    contract = CASES[name][1]
    for frozen_stages in range(-1, contract.num_stages + 1):
        model = build(name, frozen_stages=frozen_stages)
        prefixes = [
            module for i in range(max(frozen_stages, 0))
            for module in contract.frozen(i)
        ]
        for _ in range(2):  # train() after eval() keeps them frozen
            model.eval()
            model.train()
            for param_name, param in model.named_parameters():
                frozen = _under(param_name, prefixes)
                assert param.requires_grad != frozen, (frozen_stages,
                                                       param_name)
            for module_name, module in model.named_modules():
                frozen = _under(module_name, prefixes)
                assert module.training != frozen, (frozen_stages, module_name)
    with pytest.raises(ValueError, match='frozen_stages'):
        build(name, frozen_stages=contract.num_stages + 1)


@pytest.mark.parametrize('name', FREEZABLE)
def test_frozen_stages_get_no_gradient(name):
    model = build(name, frozen_stages=2).train()
    prefixes = CASES[name][1].frozen(0) + CASES[name][1].frozen(1)
    loss_of(model(torch.randn(1, 3, 64, 64))).backward()
    for param_name, param in model.named_parameters():
        assert (param.grad is None) == _under(param_name, prefixes)


@pytest.mark.parametrize('name', list(CASES))
def test_norm_eval(name):
    model = build(name, norm_eval=True).train()
    norms = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    assert bool(norms) == CASES[name][1].has_batch_norm
    assert not any(m.training for m in norms)
    # Everything else trains (LayerNorms, dropouts).
    assert all(m.training for m in model.modules()
               if not isinstance(m, _BatchNorm))
    statistics = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        model(torch.randn(2, 3, 64, 64))
    assert all(
        torch.equal(v, statistics[k]) for k, v in model.state_dict().items())
    assert not any(m.training for m in norms)
    model.eval()
    assert not any(m.training for m in model.modules())


@pytest.mark.parametrize('name', list(CASES))
def test_strict_checkpoint_round_trip(name, tmp_path):
    torch.manual_seed(0)
    source = build(name).train()
    # Running statistics that are not the defaults.
    with torch.no_grad():
        source(torch.randn(2, 3, 64, 64))
    path = tmp_path / f'{name}.pth'
    torch.save(source.state_dict(), path)
    state = torch.load(path, weights_only=True)
    x = torch.randn(2, 3, 67, 93)
    with torch.no_grad():
        expected = source.eval()(x)

    torch.manual_seed(1)
    loaded = build(name).eval()
    with torch.no_grad():
        assert not torch.equal(loaded(x)[-1], expected[-1])
    loaded.load_state_dict(state, strict=True)
    assert list(loaded.state_dict()) == list(state)
    # The same through init_cfg=dict(type='Pretrained').
    pretrained = build(
        name, init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    pretrained.init_weights()
    for model in (loaded, pretrained.eval()):
        with torch.no_grad():
            outs = model(x)
        for out, ref in zip(outs, expected, strict=True):
            torch.testing.assert_close(out, ref, rtol=0, atol=0)


def _pretrained(name, path, **init_cfg):
    return build(
        name,
        init_cfg=dict(type='Pretrained', checkpoint=str(path), **init_cfg))


@pytest.mark.parametrize('name', list(CASES))
def test_bad_checkpoints_are_refused_by_name(name, tmp_path):
    """A corrupt file, another model's weights, a prefix the checkpoint
    lacks and tensors of other shapes each get an error naming them."""
    corrupt = tmp_path / 'corrupt.pth'
    corrupt.write_bytes(b'not a checkpoint at all')
    with pytest.raises(Exception, match='corrupt.pth'):
        _pretrained(name, corrupt).init_weights()

    resnet = tmp_path / 'resnet.pth'
    torch.save({'state_dict': {'conv1.weight': torch.ones(64, 3, 7, 7)}},
               resnet)
    with pytest.raises(ValueError, match='not a checkpoint of this'):
        _pretrained(name, resnet).init_weights()

    plain = tmp_path / 'plain.pth'
    state = build(name).state_dict()
    torch.save({'state_dict': state}, plain)
    with pytest.raises(ValueError, match="prefix 'backbone.'"):
        _pretrained(name, plain, prefix='backbone.').init_weights()

    # Every tensor of the checkpoint one element wider.
    wider = {
        key: torch.zeros(*value.shape[:-1], value.shape[-1] + 1)
        for key, value in state.items() if value.dim()
    }
    other = tmp_path / 'other.pth'
    torch.save({'state_dict': wider}, other)
    key = next(iter(wider))
    with pytest.raises(ValueError, match=f'shape mismatch.*{key}'):
        _pretrained(name, other).init_weights()
