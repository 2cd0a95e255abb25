# Copyright (c) mmscalable contributors. All rights reserved.
"""mmpretrain's model hub knows every classification config by name."""
import glob
import os.path as osp

import mmpretrain
import pytest
import torch

import mmscalable  # noqa: F401  (registers the models with the hub)
from mmscalable.model_hub import (NoPublishedWeightsError,
                                  converted_checkpoint_path, model_index_path,
                                  register_classification_models)
from mmscalable.models.families import FAMILIES

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def test_list_models_names_every_classification_config():
    configs = {
        osp.basename(p)[:-3]
        for p in glob.glob(osp.join(ROOT, 'configs', '*', '*_in1k*.py'))
    }
    listed = set()
    for family in FAMILIES.values():
        listed |= set(mmpretrain.list_models(family.hub_pattern))
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


def test_the_model_index_imports_every_familys_metafile():
    import yaml
    with open(osp.join(ROOT, 'model-index.yml')) as f:
        metafiles = yaml.safe_load(f)['Import']
    assert metafiles == [
        f'{family.configs}/metafile.yml' for family in FAMILIES.values()
        if not osp.isabs(family.configs)
    ]


@pytest.mark.parametrize('family', list(FAMILIES))
def test_the_hub_lists_the_classifiers_of_each_family(family):
    spec = FAMILIES[family]
    # A family registered after mmscalable was imported is added now.
    register_classification_models()
    configs = {
        osp.basename(p)[:-3]
        for p in glob.glob(osp.join(ROOT, spec.configs, '*_in1k*.py'))
    }
    assert configs
    assert set(mmpretrain.list_models(spec.hub_pattern)) == configs
    name = sorted(configs)[0]
    model = mmpretrain.get_model(name)
    assert type(model.backbone).__name__ == spec.backbone
    with pytest.raises(NoPublishedWeightsError, match=name):
        mmpretrain.get_model(name, pretrained=True)


def _classification_entries():
    import yaml
    with open(osp.join(ROOT, 'model-index.yml')) as f:
        metafiles = yaml.safe_load(f)['Import']
    for metafile in metafiles:
        with open(osp.join(ROOT, metafile)) as f:
            for entry in yaml.safe_load(f)['Models']:
                if any(result['Task'] == 'Image Classification'
                       for result in entry['Results']):
                    yield osp.basename(osp.dirname(metafile)), entry


# The classifiers whose official repository publishes no checkpoint:
# Refiner_ViT's README links L at 448 only, GroupMixFormer's the 224 models.
NO_OFFICIAL_CHECKPOINT = {
    'refiner-vit-s_8xb128_in1k', 'refiner-vit-m_8xb128_in1k',
    'refiner-vit-l_8xb128_in1k', 'refiner-vit-s_8xb32_in1k-384px',
    'refiner-vit-m_8xb32_in1k-384px', 'refiner-vit-l_8xb32_in1k-384px',
    'groupmixformer-l_8xb128_in1k-384px'
}


def test_classification_entries_link_the_official_checkpoints():
    entries = list(_classification_entries())
    assert len(entries) == len(mmpretrain.list_models('*scalablevit*') +
                               mmpretrain.list_models('*groupmixformer*') +
                               mmpretrain.list_models('*refiner*'))
    for family, entry in entries:
        # No mmscalable weights: mmpretrain must not download anything.
        assert entry['Weights'] is None, entry['Name']
        official = entry['Converted From']
        assert official['Code'] == FAMILIES[family].checkpoint_page
        if entry['Name'] in NO_OFFICIAL_CHECKPOINT:
            assert 'Weights' not in official, entry['Name']
        else:
            assert official['Weights'].startswith('https://'), entry['Name']


@pytest.mark.parametrize('name,family', [
    ('scalablevit-s_8xb128_in1k', 'scalablevit'),
    ('groupmixformer-t_8xb128_in1k', 'groupmixformer'),
    ('refiner-vit-l_8xb64_in1k-448px', 'refiner'),
])
def test_pretrained_true_says_how_to_convert_the_official_weights(
        name, family):
    official = {
        entry['Name']: entry['Converted From']
        for _, entry in _classification_entries()
    }[name]
    with pytest.raises(NoPublishedWeightsError) as error:
        mmpretrain.get_model(name, pretrained=True)
    message = str(error.value)
    assert isinstance(error.value, ValueError)
    assert message.startswith(f'{name}: mmscalable publishes no weights')
    assert official['Weights'] in message
    # The converter next to the model index the hub was filled from.
    converter = osp.join(
        osp.dirname(model_index_path()), 'tools', 'model_converters',
        'official2mmscalable.py')
    dst = converted_checkpoint_path(name)
    assert (f'python {converter} {family} DOWNLOADED_FILE {dst}'
            in message)
    assert f"mmpretrain.get_model('{name}', pretrained='{dst}')" in message
    assert osp.isfile(converter)


@pytest.mark.parametrize(
    'name', ['refiner-vit-s_8xb128_in1k', 'refiner-vit-s_8xb32_in1k-384px'])
def test_pretrained_true_without_an_official_checkpoint(name):
    with pytest.raises(NoPublishedWeightsError,
                       match='publishes no checkpoint of this model') as error:
        mmpretrain.get_model(name, pretrained=True)
    assert 'refiner-vit-l_8xb64_in1k-448px' in str(error.value)
    assert 'https://github.com/zhoudaquan/Refiner_ViT' in str(error.value)


@pytest.mark.parametrize('name,path', [
    ('scalablevit-s_8xb128_in1k', 'checkpoints/scalablevit-s_in1k.pth'),
    ('refiner-vit-l_8xb64_in1k-448px',
     'checkpoints/refiner-vit-l_in1k-448px.pth'),
    ('groupmixformer-l_8xb128_in1k-384px',
     'checkpoints/groupmixformer-l_in1k-384px.pth'),
])
def test_converted_checkpoint_paths_are_those_of_the_docs(name, path):
    assert converted_checkpoint_path(name) == path
