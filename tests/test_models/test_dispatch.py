"""One function chooses the backend of every attention call, names it,
notes it on the module and logs it once."""
import logging

import pytest
import torch
from mmengine.logging import MMLogger
from tiny_backbones import BACKBONES

from mmscalable.models import (InteractiveWindowAttention, RefinedAttention,
                               ScalableSelfAttention)
from mmscalable.models.families import FAMILIES
from mmscalable.models.layers import dispatch
from mmscalable.models.layers.dispatch import (BACKENDS, CallFacts,
                                               backends_used, reset_backends,
                                               select_backend)
from mmscalable.ops import has_compiled_kernel


def _facts(**kwargs):
    facts = dict(
        device='cpu',
        dtype=torch.float32,
        training=False,
        needs_grad=False,
        compiling=False,
        tracing=False,
        deterministic=False)
    return CallFacts(**{**facts, **kwargs})


@pytest.mark.parametrize('module', [
    ScalableSelfAttention(16, 2, spatial_ratio=2),
    InteractiveWindowAttention(16, 2, window_size=4),
])
def test_scaled_dot_product_attention_backends(module):
    rule = dispatch.RULES[type(module).__name__]
    assert rule(module, _facts()) == 'explicit'
    assert rule(module, _facts(device='cuda')) == 'sdpa'
    x = torch.randn(1, 64, 16)
    assert select_backend(module, x) == 'explicit'
    module.impl = 'reference'
    assert select_backend(module, x) == 'reference'


def _refiner(**kwargs):
    module = RefinedAttention(32, 4, refine=True, **kwargs)
    for norm in module.modules():
        if isinstance(norm, torch.nn.BatchNorm2d):
            norm.running_var.uniform_(0.5, 1.5)
    return module


def test_refined_attention_backends():
    x = torch.randn(2, 16, 32)
    prev = torch.softmax(torch.randn(2, 4, 16, 16), -1)
    module = _refiner().eval()
    with torch.no_grad():
        module(x, prev)
    # Frozen norms: the fused op where the extension has its kernel.
    assert module.backend == ('ext' if has_compiled_kernel(x) else
                              'explicit')
    module.train()
    module(x, prev)
    assert module.backend == 'explicit'
    # Maps over the memory budget are computed in chunks of rows.
    small = _refiner(memory_budget=16 * 16 * 12 * 4 - 1).train()
    small(x, prev)
    assert small.backend == 'chunked'
    reference = _refiner(impl='reference').eval()
    with torch.no_grad():
        reference(x, prev)
    assert reference.backend == 'reference'
    assert backends_used(module) == {
        'RefinedAttention':
        sorted({'explicit', 'ext' if has_compiled_kernel(x) else 'explicit'})
    }


@pytest.mark.parametrize('family', list(FAMILIES))
def test_every_familys_attention_notes_its_backends(family):
    model = BACKBONES[family]().eval()
    with torch.no_grad():
        model(torch.randn(1, 3, 64, 64))
    used = backends_used(model)
    assert used, 'no module of the model chose a backend'
    assert FAMILIES[family].attention in used
    assert all(set(names) <= set(BACKENDS) for names in used.values())
    reset_backends(model)
    assert backends_used(model) == {}
    reference = BACKBONES[family](attn_impl='reference').eval()
    with torch.no_grad():
        reference(torch.randn(1, 3, 64, 64))
    assert set(backends_used(reference)[FAMILIES[family].attention]) == {
        'reference'
    }


def test_each_choice_is_logged_once_at_debug(monkeypatch):
    logger = MMLogger.get_instance('test_dispatch', log_level='DEBUG')
    records = []
    handler = logging.Handler(level=logging.DEBUG)
    handler.emit = records.append
    logger.addHandler(handler)
    monkeypatch.setattr(dispatch, '_LOGGED', set())
    module = ScalableSelfAttention(16, 2, spatial_ratio=2)
    x = torch.randn(1, 64, 16)
    try:
        for _ in range(3):
            select_backend(module, x)
    finally:
        logger.removeHandler(handler)
    choices = [r for r in records if 'computes with' in r.getMessage()]
    assert [r.getMessage() for r in choices] == [
        "ScalableSelfAttention computes with the 'explicit' backend"
    ]
    assert choices[0].levelno == logging.DEBUG


def test_a_module_without_a_rule_is_named():
    module = torch.nn.Linear(2, 2)
    module.impl = 'fast'
    with pytest.raises(KeyError, match='no backend rule for Linear'):
        select_backend(module, torch.randn(1, 2))
