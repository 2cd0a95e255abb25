"""A lab's own configs, in a folder of its own, inheriting ours through
``mmscalable::``: the configs of docs/small_data.md as written, for every
family and task."""
import os.path as osp
import re
import subprocess
import sys

import pytest
from mmengine.config import Config, ConfigDict
from mmengine.registry import init_default_scope

import mmscalable  # noqa: F401  (registers the mmscalable:: config prefix)

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
DOC = osp.join(ROOT, 'docs', 'small_data.md')

# The paper configs a lab inherits, per family and task.
BASES = {
    ('scalablevit', 'det'):
    'scalablevit/mask-rcnn_scalablevit-s_fpn_1x_coco.py',
    ('groupmixformer', 'det'):
    'groupmixformer/mask-rcnn_groupmixformer-s_fpn_1x_coco.py',
    ('refiner', 'det'): 'refiner/mask-rcnn_refiner-vit-s_fpn_1x_coco.py',
    ('scalablevit', 'seg'):
    'scalablevit/upernet_scalablevit-s_8xb2-160k_ade20k-512x512.py',
    ('groupmixformer', 'seg'):
    'groupmixformer/upernet_groupmixformer-s_8xb2-160k_ade20k-512x512.py',
    ('refiner', 'seg'):
    'refiner/upernet_refiner-vit-s_8xb2-160k_ade20k-512x512.py',
    ('scalablevit', 'cls'): 'scalablevit/scalablevit-s_8xb128_in1k.py',
    ('groupmixformer', 'cls'):
    'groupmixformer/groupmixformer-s_8xb128_in1k.py',
    ('refiner', 'cls'): 'refiner/refiner-vit-s_8xb128_in1k.py',
}
DOC_CONFIG = dict(det='lab_coco.py', seg='lab_ade.py', cls='lab_cls.py')
SCOPES = dict(det='mmdet', seg='mmseg', cls='mmpretrain')
CASES = sorted(BASES)


def doc_configs():
    """The Python blocks of docs/small_data.md that start with
    ``# <file>.py``, by file name."""
    with open(DOC) as f:
        text = f.read()
    return dict(
        re.findall(r'```python\n# (\w+\.py)\b[^\n]*\n(.*?)```', text, re.S))


def lab_config(family, task):
    """The doc's config for ``task``, inheriting ``family``'s paper config
    (the doc says to change only the base for another family, and to give
    Refiner-ViT the crop size in segmentation)."""
    text = doc_configs()[DOC_CONFIG[task]]
    base = re.search(r"_base_ = \['mmscalable::(.*?)'\]", text).group(1)
    text = text.replace(base, BASES[family, task])
    if (family, task) == ('refiner', 'seg'):
        text = text.replace('    data_preprocessor=dict(size=crop_size),\n',
                            '    data_preprocessor=dict(size=crop_size),\n'
                            '    backbone=dict(img_size=crop_size),\n')
        assert 'img_size=crop_size' in text
    return text


def test_doc_holds_one_config_per_task_inheriting_a_paper_config():
    configs = doc_configs()
    assert sorted(configs) == sorted(DOC_CONFIG.values())
    for task, name in DOC_CONFIG.items():
        [base] = re.findall(r"_base_ = \['mmscalable::(.*?)'\]", configs[name])
        assert base in {BASES[f, t] for f, t in BASES if t == task}


def test_doc_configs_read_the_embedded_sets_as_written(
        tmp_path, link_demo_data, monkeypatch):
    """Each config of the doc, as written, reads every split of the
    embedded set of its layout with the classes it names, and its heads
    predict those classes."""
    from mmengine.registry import DATASETS, MODELS
    root = link_demo_data(tmp_path)
    monkeypatch.chdir(root)
    for task, name in DOC_CONFIG.items():
        path = root / name
        path.write_text(doc_configs()[name])
        cfg = Config.fromfile(str(path))
        init_default_scope(cfg.default_scope)
        classes = tuple(cfg.metainfo['classes'])
        for loader in ('train_dataloader', 'val_dataloader',
                       'test_dataloader'):
            dataset = DATASETS.build(cfg[loader].dataset)
            assert len(dataset) > 0, (name, loader)
            assert tuple(dataset.metainfo['classes']) == classes
        cfg.model.backbone.init_cfg = None
        model = MODELS.build(cfg.model)
        if task == 'det':
            heads = [model.roi_head.bbox_head, model.roi_head.mask_head]
            assert cfg.val_evaluator.ann_file.startswith(cfg.data_root)
        elif task == 'seg':
            heads = [model.decode_head, model.auxiliary_head]
        else:
            heads = [model.head]
            assert cfg.data_preprocessor.num_classes == len(classes)
        assert [head.num_classes for head in heads] == [len(classes)] * len(
            heads)


def test_package_prefix_needs_mmscalable_imported(tmp_path):
    """What docs/get_started.md says of mmdet's, mmseg's and mmpretrain's
    own tools: they read the config before anything imports mmscalable, and
    mmengine then refuses the prefix."""
    (tmp_path / 'lab.py').write_text(
        "_base_ = ['mmscalable::" + BASES['scalablevit', 'det'] + "']\n")
    read = ('from mmengine.config import Config; '
            "Config.fromfile('lab.py')")
    refused = subprocess.run([sys.executable, '-c', read],
                             cwd=tmp_path,
                             capture_output=True,
                             text=True)
    assert refused.returncode != 0
    assert ('AssertionError: mmengine does not support to load mmscalable '
            'config') in refused.stderr
    imported = subprocess.run(
        [sys.executable, '-c', 'import mmscalable; ' + read],
        cwd=tmp_path,
        capture_output=True,
        text=True)
    assert imported.returncode == 0, imported.stderr[-3000:]


def typed_dicts(value, path=''):
    """The outermost dicts with a ``type`` under ``value``: those that
    mmengine gives a scope, with their paths."""
    if isinstance(value, dict):
        if 'type' in value:
            yield path, value
            return
        for key, item in value.items():
            yield from typed_dicts(item, f'{path}.{key}')
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            yield from typed_dicts(item, f'{path}[{i}]')


@pytest.mark.parametrize('family,task', CASES)
def test_inherited_dicts_keep_their_task_scope(family, task, tmp_path,
                                               monkeypatch):
    """mmengine scopes the dicts of a ``pkg::`` base by ``pkg``; ours take
    the task library's scope, so that every type is found where the file
    itself finds it."""
    path = tmp_path / DOC_CONFIG[task]
    path.write_text(lab_config(family, task))
    monkeypatch.chdir(tmp_path)
    cfg = Config.fromfile(str(path))
    assert cfg.default_scope == SCOPES[task]
    scoped = dict(typed_dicts(dict(cfg)))
    assert '.model' in scoped and '.param_scheduler[0]' in scoped
    for name, value in scoped.items():
        assert isinstance(value, ConfigDict)
        assert value.get('_scope_', SCOPES[task]) == SCOPES[task], name

    init_default_scope(cfg.default_scope)
    from mmengine.registry import MODELS
    cfg.model.backbone.init_cfg = None
    model = MODELS.build(cfg.model)
    assert type(model.backbone).__name__ == {
        'scalablevit': 'ScalableViT',
        'groupmixformer': 'GroupMixFormer',
        'refiner': 'RefinerViT'
    }[family]


@pytest.mark.slow
@pytest.mark.parametrize('family,task', CASES)
def test_lab_config_trains_from_its_own_folder(family, task, tmp_path,
                                               link_demo_data):
    """``tools/train.py`` run from the lab's folder trains the doc's config
    (a few iterations), with no registry scope warning."""
    root = link_demo_data(tmp_path)
    (root / DOC_CONFIG[task]).write_text(lab_config(family, task))
    # A few iterations, no validation, no checkpoint: what is tested is
    # that the inherited config builds and trains.
    short = {
        'det': ['train_cfg.max_epochs=1', 'train_dataloader.batch_size=2',
                'train_dataloader.dataset.indices=4'],
        'seg': ['train_cfg.max_iters=2', 'train_dataloader.batch_size=2'],
        # Past the 2 warm-up epochs of the scheduler.
        'cls': ['train_cfg.max_epochs=3', 'train_dataloader.batch_size=2',
                'train_dataloader.dataset.indices=2'],
    }[task]
    result = subprocess.run([
        sys.executable,
        osp.join(ROOT, 'tools', 'train.py'), DOC_CONFIG[task],
        '--cfg-options', 'model.backbone.init_cfg=None', 'val_cfg=None',
        'val_dataloader=None', 'val_evaluator=None',
        'default_hooks.checkpoint=None', 'default_hooks.logger.interval=1',
        *short
    ],
                            cwd=root,
                            capture_output=True,
                            text=True)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-5000:]
    assert 'Failed to search registry' not in output
    assert re.search(r'\(train\)\s*\[[^\n]*\bloss: ', output), output[-3000:]
