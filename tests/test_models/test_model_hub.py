# Copyright (c) mmscalable contributors. All rights reserved.
"""mmpretrain's model hub knows every classification config by name."""
import glob
import os.path as osp

import mmpretrain
import torch

import mmscalable  # noqa: F401  (registers the models with the hub)
from mmscalable.model_hub import register_classification_models

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def test_list_models_names_every_classification_config():
    configs = {
        osp.basename(p)[:-3]
        for p in glob.glob(osp.join(ROOT, 'configs', '*', '*_in1k*.py'))
    }
    listed = set()
    for family in ('scalablevit', 'groupmixformer', 'refiner'):
        listed |= set(mmpretrain.list_models(f'*{family}*'))
    assert listed == configs
    # Detection and segmentation entries stay out: the hub builds
    # mmpretrain models.
    assert not mmpretrain.list_models('*mask-rcnn_scalablevit*')
    # Registering again adds nothing and keeps the entries.
    assert register_classification_models() == []


def test_get_model_by_name_with_pretrained_weights(tmp_path):
    name = 'groupmixformer-m_8xb128_in1k'
    model = mmpretrain.get_model(name)
    assert type(model.backbone).__name__ == 'GroupMixFormer'
    with torch.no_grad():
        for p in model.parameters():
            p.normal_()
    path = str(tmp_path / 'weights.pth')
    torch.save(dict(state_dict=model.state_dict()), path)
    loaded = mmpretrain.get_model(name, pretrained=path)
    for key, value in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value)
