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
# The document that gives the folder layout each data set is read in.
DATA_LAYOUT_DOC = 'docs/get_started.md, "Data"'
# ``data_prefix`` keys of label folders (mmseg's label maps, mmdet's panoptic
# and semantic maps): a test that only formats predictions reads none.
LABEL_PREFIXES = ('seg_map_path', 'seg', 'sem_seg', 'sem_seg_path')


def check_inputs(cfg: Config) -> None:
    """Raise if the work dir is not writable, the backbone's pretrained
    checkpoint is missing, an embedded demo set the config reads is missing
    or stale, a data root or ``data_prefix`` folder of the config is
    missing, or an annotation file of the config is missing or does not
    parse."""
    check_work_dir(cfg.work_dir)
    check_pretrained(cfg)
    for split, key, dataset in dataset_configs(cfg):
        check_demo_data(split, dataset)
        check_data_root(split, dataset, key)
        check_annotation_file(split, dataset, key)
        check_data_prefix(
            split, dataset, key, read_labels=reads_labels(cfg, split))


def relative_path_note(path: str) -> str:
    """For a relative ``path``: a sentence saying that it is read from the
    current folder, and where it was looked for; '' for an absolute one.

    The tools read every relative path of a config (``data_root``,
    checkpoints) from the folder they are run in, not from the config's.
    """
    if osp.isabs(path):
        return ''
    cwd = os.getcwd()
    return (f' ({path} is a relative path, resolved against the current '
            f'working directory {cwd}: it was looked for at '
            f'{osp.normpath(osp.join(cwd, path))})')


def repository_root() -> Optional[str]:
    """The checkout mmscalable is imported from (the folder holding
    ``tools/misc/make_demo_data.py``), or None for an installed copy."""
    root = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
    if osp.isfile(osp.join(root, 'tools', 'misc', 'make_demo_data.py')):
        return root
    return None


def _is_local(path, dataset: dict) -> bool:
    """``path`` is a path of the local file system (not a URL, not read
    through another storage backend)."""
    backend = (dataset.get('backend_args') or {}).get('backend', 'local')
    return isinstance(path, str) and '://' not in path and backend == 'local'


def _how_to_point_at_data(key: str, option: str) -> str:
    return (f'put the data set there (the layout each data set is read in: '
            f'{DATA_LAYOUT_DOC}) or give its place with --cfg-options '
            f'{key}.{option}=PATH')


def check_data_root(split: str, dataset: dict, key: str = '') -> None:
    """A dataset's local ``data_root`` is an existing folder.

    mmseg's ``ADE20KDataset`` (and any dataset read from folders without an
    annotation file) would otherwise fail only when the dataloader is
    built, after the model. Only a dataset with a ``type`` is checked (a
    dict without one is no dataset the runner could build).

    Args:
        split (str): The dataloader, e.g. ``'train_dataloader'``.
        dataset (dict): The dataset config.
        key (str): The dataset's key in the config (for the
            ``--cfg-options`` of the message), e.g.
            ``'train_dataloader.dataset'``.
    """
    data_root = dataset.get('data_root')
    if (not data_root or not dataset.get('type')
            or not _is_local(data_root, dataset)):
        return
    if osp.isdir(data_root):
        return
    name = f'the data root {data_root} of {split} ({dataset.get("type")})'
    if osp.exists(data_root):
        raise NotADirectoryError(f'{name} is not a folder')
    key = key or f'{split}.dataset'
    raise FileNotFoundError(
        f'{name} does not exist{relative_path_note(data_root)}: '
        f'{_how_to_point_at_data(key, "data_root")}')


def check_data_prefix(split: str,
                      dataset: dict,
                      key: str = '',
                      read_labels: bool = True) -> None:
    """The folders of a dataset's ``data_prefix`` (images, label maps)
    exist under its ``data_root``.

    Args:
        split (str): The dataloader, e.g. ``'train_dataloader'``.
        dataset (dict): The dataset config.
        key (str): The dataset's key in the config (for the message).
        read_labels (bool): Whether the run reads the label folders
            (:data:`LABEL_PREFIXES`); a test that only formats its
            predictions does not.
    """
    prefix = dataset.get('data_prefix')
    if isinstance(prefix, str):
        items = [(None, prefix)]
    elif isinstance(prefix, dict):
        items = list(prefix.items())
    else:
        return
    data_root = dataset.get('data_root')
    if data_root and not _is_local(data_root, dataset):
        return
    key = key or f'{split}.dataset'
    for name, folder in items:
        if not folder or not _is_local(folder, dataset):
            continue
        if name in LABEL_PREFIXES and not read_labels:
            continue
        path = osp.join(data_root, folder) if data_root else folder
        if osp.isdir(path):
            continue
        option = 'data_prefix' + (f'.{name}' if name else '')
        where = (f'{option}={folder!r} under the data root {data_root}'
                 if data_root else f'{option}={folder!r}')
        raise FileNotFoundError(
            f'the folder {path} of {split} ({dataset.get("type")}; {where}) '
            f'does not exist{relative_path_note(path)}: '
            f'{_how_to_point_at_data(key, option)}')


def reads_labels(cfg: Config, split: str) -> bool:
    """Whether the evaluator of ``split`` reads the labels: not when every
    metric of it has ``format_only=True`` (predictions written for a test
    server)."""
    evaluator = cfg.get(split.replace('_dataloader', '_evaluator'))
    if isinstance(evaluator, dict):
        evaluator = [evaluator]
    if not evaluator or not isinstance(evaluator, (list, tuple)):
        return True
    return not all(
        isinstance(metric, dict) and metric.get('format_only')
        for metric in evaluator)


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
    from mmscalable.models.families import family_of_backbone
    family = family_of_backbone(str(backbone.get('type', '')))
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
    for split, _, dataset in dataset_configs(cfg):
        yield split, dataset


def dataset_configs(cfg: Config) -> Iterator[Tuple[str, str, dict]]:
    """(dataloader name, key, dataset config) of every dataset of ``cfg``,
    those inside dataset wrappers included; the key is the one
    ``--cfg-options`` takes, e.g. ``train_dataloader.dataset.dataset``."""
    for split in SPLITS:
        stack = [(f'{split}.dataset', (cfg.get(split) or {}).get('dataset'))]
        # Dataset wrappers (RepeatDataset, ConcatDataset...) nest datasets.
        while stack:
            key, item = stack.pop()
            if isinstance(item, dict):
                yield split, key, item
                stack.append((f'{key}.dataset', item.get('dataset')))
                stack.extend(
                    (f'{key}.datasets.{index}', dataset)
                    for index, dataset in enumerate(
                        item.get('datasets') or []))


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
    root, else the marker file a complete set ends with) and both fixes;
    for a relative ``data_root`` it also says where that was looked for
    (the current folder) and, run from outside the repository, to run from
    its root or to generate the data in the current folder.
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
                            f'generated; {fix}{_demo_data_elsewhere(root)}')


def _demo_data_elsewhere(root: str) -> str:
    """For a relative demo data ``root``: where it was looked for and, run
    outside the repository, where the tools find the demo data."""
    if osp.isabs(root):
        return ''
    cwd = os.getcwd()
    note = (f'. {root} is a relative path, resolved against the current '
            f'working directory {cwd}: the demo data was looked for in '
            f'{osp.normpath(osp.join(cwd, root))}')
    checkout = repository_root()
    if checkout is None or osp.samefile(checkout, cwd):
        return note
    script = osp.join(checkout, 'tools', 'misc', 'make_demo_data.py')
    if osp.normpath(root) != 'data':
        script += f' --root {root}'
    return (f'{note}. Run the tool from the repository root {checkout}, or '
            f'make the demo data in {cwd} with `python {script}` (or '
            '--make-demo-data)')


def check_annotation_file(split: str, dataset: dict, key: str = '') -> None:
    """A dataset's ``ann_file`` exists and, for JSON, parses.

    mmdet reports a JSON syntax error as ``Expecting value: line 1 column 1``
    without the file; here it comes with the file's path and the split.
    Files over :data:`FULL_PARSE_BYTES` are checked for their first and last
    character only (a truncated download fails that).

    Args:
        split (str): The dataloader, e.g. ``'train_dataloader'``.
        dataset (dict): The dataset config.
        key (str): The dataset's key in the config (for the message).
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
        raise FileNotFoundError(
            f'the {name} does not exist{relative_path_note(path)}: '
            f'{_how_to_point_at_data(key or f"{split}.dataset", "ann_file")}')
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
