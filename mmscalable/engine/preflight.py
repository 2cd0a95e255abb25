# Copyright (c) mmscalable contributors. All rights reserved.
"""Checks the tools run before a job starts, so that a bad input stops it at
once with an error that names the input, not hours later or deep in a
traceback of another library."""
import json
import os
import os.path as osp
import tempfile
from typing import Iterator, Tuple

from mmengine.config import Config

SPLITS = ('train_dataloader', 'val_dataloader', 'test_dataloader')
# JSON files above this size (COCO's train annotations are 450 MB) are only
# checked for a complete outer object: every rank parsing them in full
# would cost seconds and gigabytes at each start.
FULL_PARSE_BYTES = 64 * 2**20


def check_inputs(cfg: Config) -> None:
    """Raise if the work dir is not writable or an annotation file of the
    config is missing or does not parse."""
    check_work_dir(cfg.work_dir)
    for split, dataset in config_datasets(cfg):
        check_annotation_file(split, dataset)


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
