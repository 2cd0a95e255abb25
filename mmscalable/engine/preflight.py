# Copyright (c) mmscalable contributors. All rights reserved.
"""Checks the tools run before a job starts, so that a bad input stops it at
once with an error that names the input, not hours later or deep in a
traceback of another library."""
import json
import os
import os.path as osp
import tempfile
from typing import Iterator, Optional, Tuple

from mmengine.config import Config

SPLITS = ('train_dataloader', 'val_dataloader', 'test_dataloader')
# JSON files above this size (COCO's train annotations are 450 MB) are only
# checked for a complete outer object: every rank parsing them in full
# would cost seconds and gigabytes at each start.
FULL_PARSE_BYTES = 64 * 2**20


def check_inputs(cfg: Config) -> None:
    """Raise if the work dir is not writable, the backbone's pretrained
    checkpoint is missing, an embedded demo set the config reads is missing
    or stale, or an annotation file of the config is missing or does not
    parse."""
    check_work_dir(cfg.work_dir)
    check_pretrained(cfg)
    for split, dataset in config_datasets(cfg):
        check_demo_data(split, dataset)
        check_annotation_file(split, dataset)


def check_pretrained(cfg: Config) -> None:
    """The local checkpoint of the backbone's
    ``init_cfg=dict(type='Pretrained')`` exists; the error says how to get
    one (the official checkpoint and the converter command) or to train
    from scratch."""
    backbone = (cfg.get('model') or {}).get('backbone') or {}
    init_cfg = backbone.get('init_cfg')
    if not (isinstance(init_cfg, dict)
            and init_cfg.get('type') == 'Pretrained'):
        return
    path = init_cfg.get('checkpoint')
    if not isinstance(path, str) or '://' in path or osp.isfile(path):
        return
    from mmscalable.models.checkpoint import FAMILIES
    backbone_type = str(backbone.get('type', '')).split('.')[-1]
    family = next(
        (f for f in FAMILIES.values() if f.backbone == backbone_type), None)
    how = ''
    if family is not None:
        how = (
            f' Download an official {family.title} checkpoint (linked from '
            f'https://github.com/{family.repository}) and convert it: '
            '`python tools/model_converters/official2mmscalable.py '
            f'{family.name} OFFICIAL_CHECKPOINT {path}` (docs/model_zoo.md '
            'names the file of each variant); or point the config at a '
            'checkpoint you have with --cfg-options '
            'model.backbone.init_cfg.checkpoint=PATH.')
    raise FileNotFoundError(
        f'the pretrained backbone checkpoint {path} does not exist (relative '
        f'paths are read from the current folder, {os.getcwd()}).{how} To '
        'train from scratch instead: --cfg-options '
        'model.backbone.init_cfg=None.')


def check_work_dir(work_dir: str) -> None:
    """The work dir exists (or can be made) and takes a file."""
    try:
        os.makedirs(work_dir, exist_ok=True)
        with tempfile.TemporaryFile(dir=work_dir):
            pass
    except OSError as e:
        raise PermissionError(
            f'the work dir {work_dir} is not writable ({e.strerror}); '
            'choose another one with --work-dir') from e


def config_datasets(cfg: Config) -> Iterator[Tuple[str, dict]]:
    """(dataloader name, dataset config) of every dataset of ``cfg``, those
    inside dataset wrappers included."""
    for split in SPLITS:
        stack = [(cfg.get(split) or {}).get('dataset')]
        # Dataset wrappers (RepeatDataset, ConcatDataset...) nest datasets.
        while stack:
            item = stack.pop()
            if isinstance(item, dict):
                yield split, item
                stack.append(item.get('dataset'))
                stack.extend(item.get('datasets') or [])


def demo_data_root(dataset: dict) -> Optional[str]:
    """The directory holding the embedded demo set ``dataset`` reads (the
    ``root`` of :func:`mmscalable.datasets.ensure_demo_data`), or None if its
    ``data_root`` is not one of :data:`mmscalable.datasets.DEMO_DIRS`."""
    from mmscalable.datasets.demo_data import DEMO_DIRS
    data_root = dataset.get('data_root')
    if not data_root or not isinstance(data_root, str) or '://' in data_root:
        return None
    if osp.basename(osp.normpath(data_root)) not in DEMO_DIRS:
        return None
    return osp.dirname(osp.normpath(data_root)) or '.'


def check_demo_data(split: str, dataset: dict) -> None:
    """An embedded demo set the dataset reads is there and up to date.

    The tools do not generate the demo data: it is made by
    ``python tools/misc/make_demo_data.py`` or a tool's ``--make-demo-data``.
    The error names the first missing file (the annotation file, the data
    root, else the marker file a complete set ends with) and both fixes.
    """
    root = demo_data_root(dataset)
    if root is None:
        return
    from mmscalable.datasets.demo_data import (MARKER_FILE,
                                               is_demo_data_up_to_date)
    data_root = dataset['data_root']
    if is_demo_data_up_to_date(root)[osp.basename(osp.normpath(data_root))]:
        return
    command = 'python tools/misc/make_demo_data.py'
    if osp.normpath(root) != 'data':
        command += f' --root {root}'
    name = (f'the embedded demo data {data_root} of {split} '
            f'({dataset.get("type")})')
    fix = f'generate it with `{command}` or run the tool with --make-demo-data'
    marker = osp.join(data_root, MARKER_FILE)
    if osp.isfile(marker):
        raise RuntimeError(f'{name} is out of date ({marker} is from another '
                           f'version of the generator): {fix}')
    ann_file = dataset.get('ann_file')
    ann_path = None
    if ann_file and isinstance(ann_file, str):
        ann_path = osp.join(data_root, ann_file)
    if ann_path and not osp.isfile(ann_path):
        missing = ann_path
    elif not osp.isdir(data_root):
        missing = data_root
    else:
        missing = marker
    raise FileNotFoundError(f'{missing} does not exist: {name} has not been '
                            f'generated; {fix}')


def check_annotation_file(split: str, dataset: dict) -> None:
    """A dataset's ``ann_file`` exists and, for JSON, parses.

    mmdet reports a JSON syntax error as ``Expecting value: line 1 column 1``
    without the file; here it comes with the file's path and the split.
    Files over :data:`FULL_PARSE_BYTES` are checked for their first and last
    character only (a truncated download fails that).
    """
    ann_file = dataset.get('ann_file')
    if not ann_file or not isinstance(ann_file, str) or '://' in ann_file:
        return
    data_root = dataset.get('data_root')
    path = ann_file
    if data_root and not osp.isabs(ann_file):
        path = osp.join(data_root, ann_file)
    backend = (dataset.get('backend_args') or {}).get('backend', 'local')
    if '://' in path or backend != 'local':
        return  # remote storage: the dataset's file backend reads it
    name = f'annotation file {path} of {split} ({dataset.get("type")})'
    if not osp.isfile(path):
        raise FileNotFoundError(f'the {name} does not exist')
    if not path.endswith('.json'):
        return
    if osp.getsize(path) > FULL_PARSE_BYTES:
        if _outer_characters(path) not in ('{}', '[]'):
            raise ValueError(f'the {name} is not valid JSON: it does not '
                             'end as it begins (truncated?)')
        return
    try:
        with open(path, 'rb') as f:
            json.load(f)
    except (ValueError, UnicodeDecodeError) as e:
        raise ValueError(f'the {name} is not valid JSON: {e}') from e


def _outer_characters(path: str) -> str:
    with open(path, 'rb') as f:
        first = f.read(4096).lstrip()[:1]
        f.seek(max(0, osp.getsize(path) - 4096))
        last = f.read().rstrip()[-1:]
    return (first + last).decode('ascii', errors='replace')
