"""What the tests of each family's official checkpoints share: a tiny
classifier config, the checks of the converted keys and logits, and the
tiny model's weights under their official names."""
import copy

import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

from mmscalable.models.families import FAMILIES


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
