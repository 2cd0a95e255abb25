"""What the tests of each family's official checkpoints share: a randomised
official model, a tiny classifier config, and the checks of the converted
keys and logits."""
import copy

import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope
from torch.nn.modules.batchnorm import _BatchNorm

from mmscalable.models.families import FAMILIES


def randomise_(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Perturb every parameter and BatchNorm statistic of ``model`` in
    place, so that a swapped tensor shows in the outputs."""
    generator = torch.Generator().manual_seed(seed)

    def noise(t, scale):
        return torch.randn(t.shape, generator=generator) * scale

    with torch.no_grad():
        for p in model.parameters():
            p.add_(noise(p, 0.05))
        for module in model.modules():
            if isinstance(module, _BatchNorm) and module.track_running_stats:
                module.running_mean.copy_(noise(module.running_mean, 0.1))
                module.running_var.copy_(
                    torch.rand(module.running_var.shape,
                               generator=generator) + 0.5)
    return model


def tiny_classifier_cfg(config: str, arch: dict, head_in_channels: int,
                        **backbone) -> Config:
    """The classification ``config`` with a tiny ``arch``, no drop path and
    a 10-class head (``backbone`` updates the backbone's settings)."""
    cfg = Config.fromfile(config)
    cfg.model.backbone.update(
        arch=copy.deepcopy(arch), drop_path_rate=0., **backbone)
    cfg.model.head.in_channels = head_in_channels
    cfg.model.head.num_classes = 10
    return cfg


def assert_key_rules_round_trip(family: str, official_state: dict,
                                cfg: Config) -> None:
    """The family's key rules rename the official weights to the
    classifier's own keys and shapes, and back to the official keys."""
    from mmpretrain.registry import MODELS
    spec = FAMILIES[family]
    converted = spec.official_to_mmcls(official_state)
    assert list(spec.mmcls_to_official(converted)) == list(official_state)
    # Another test may have left another library's scope current.
    init_default_scope('mmpretrain')
    model_state = MODELS.build(cfg.model).state_dict()
    assert {k: v.shape for k, v in converted.items()} == {
        k: v.shape
        for k, v in model_state.items()
    }


def assert_converted_logits(official: torch.nn.Module, converted: str,
                            cfg: Config, x: torch.Tensor,
                            atol: float = 1e-4) -> None:
    """The classifier of ``cfg`` with the ``converted`` checkpoint gives the
    official model's logits on ``x``."""
    from mmpretrain import get_model
    model = get_model(cfg, pretrained=converted).eval()
    with torch.no_grad():
        expected = official(x)
        logits = model(x, mode='tensor')
    torch.testing.assert_close(logits, expected, rtol=1e-4, atol=atol)


def tiny_official_weights(family: str):
    """The weights of ``family``'s tiny model as a classifier holds them
    (``backbone.*``; without what classifier checkpoints lack) and under
    their official names: ``(classifier_weights, official_weights)``."""
    from tiny_backbones import tiny_backbone
    spec = FAMILIES[family]
    optional = tuple(spec.backbone_class.optional_missing)
    mmcls = {
        f'backbone.{key}': value
        for key, value in tiny_backbone(family).state_dict().items()
        if not key.endswith('num_batches_tracked')
        and not key.startswith(optional)
    }
    return mmcls, spec.mmcls_to_official(mmcls)
