# Copyright (c) mmscalable contributors. All rights reserved.
"""Config preparation shared by ``tools/train.py`` and ``tools/test.py``.

The tools serve mmdet, mmseg and mmpretrain configs alike; what differs
between the libraries (the visualization hook's options) is decided by the
config's ``default_scope``.
"""
import os.path as osp
from typing import List

from mmengine.config import Config, ConfigDict

from mmscalable.compat import init_cpu_process_group, prepare_launcher
from .preflight import check_inputs, config_datasets, demo_data_root

# Added to every config the tools run (see ``mmscalable.engine.hooks``).
TOOL_HOOKS = ('mmscalable.RandomStateHook', 'mmscalable.CheckpointMatchHook')


def load_tool_config(args) -> Config:
    """The config of a tool's ``args``: launcher, overrides and work dir.

    The work dir is ``--work-dir`` first, then the config's, then
    ``work_dirs/<config name>``.
    """
    cfg = Config.fromfile(args.config)
    cfg.launcher = args.launcher
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    prepare_launcher(cfg)
    add_tool_hooks(cfg)
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(args.config))[0])
    return cfg


def build_runner(cfg: Config):
    """Check the inputs, start the CPU process group if there is one to
    start, then build the runner.

    Without a ``runner_type`` in the config the runner is a
    :class:`~mmscalable.engine.tool_runner.ToolRunner`, whose console
    summarises the optimizer's per-parameter settings and names the device;
    a runner of another type gets the same filters once built (after it has
    logged its environment).

    The embedded demo data is not generated here: see
    :func:`make_config_demo_data`.
    """
    from mmengine.registry import RUNNERS

    from .log_filters import install_log_filters
    from .tool_runner import ToolRunner
    check_inputs(cfg)
    init_cpu_process_group(cfg)
    if 'runner_type' not in cfg:
        return ToolRunner.from_cfg(cfg)
    runner = RUNNERS.build(cfg)
    if getattr(runner, 'logger', None) is not None:
        install_log_filters(runner.logger)
    return runner


def add_tool_hooks(cfg: Config) -> None:
    """Append the hooks of :data:`TOOL_HOOKS` the config does not list."""
    hooks = list(cfg.get('custom_hooks') or [])
    listed = {hook.get('type') for hook in hooks}
    for hook_type in TOOL_HOOKS:
        if hook_type not in listed and hook_type.split('.')[-1] not in listed:
            hooks.append(ConfigDict(type=hook_type))
    cfg.custom_hooks = hooks


def make_config_demo_data(cfg: Config) -> List[str]:
    """Generate the embedded demo data the config reads, unless up to date.

    What the tools' ``--make-demo-data`` does: building a runner does not.

    Args:
        cfg (Config): A config whose datasets may read ``<root>/demo_coco``,
            ``<root>/demo_ade`` or ``<root>/demo_cls``.

    Returns:
        list[str]: The roots the demo sets were made (or found) under.
    """
    from mmscalable.datasets.demo_data import ensure_demo_data
    roots = {demo_data_root(dataset) for _, dataset in config_datasets(cfg)}
    roots = sorted(root for root in roots if root is not None)
    for root in roots:
        ensure_demo_data(root=root)
    return roots


# The test-time painting hook of each library.
VISUALIZATION_HOOKS = {
    'mmdet': 'mmdet.DetVisualizationHook',
    'mmseg': 'mmseg.SegVisualizationHook',
    'mmpretrain': 'mmpretrain.VisualizationHook',
}


def add_visualization(cfg: Config, show_dir: str, interval: int = 1) -> str:
    """Make the test loop paint its predictions into one folder.

    The same for mmdet, mmseg and mmpretrain configs: a relative
    ``show_dir`` is inside the work dir (``cfg.work_dir``), and every
    ``interval``-th image is drawn (mmseg draws every 50th by default,
    mmpretrain one in 5,000). The pictures are ``<image name>`` for mmdet,
    ``vis_data/vis_image/<image name>_<step>.png`` for mmseg and
    ``<image name>_<step>.png`` for mmpretrain.

    Returns:
        str: The folder.
    """
    scope = cfg.get('default_scope')
    if cfg.get('visualizer') is None:
        raise RuntimeError('--show-dir needs a `visualizer` in the config')
    cfg.setdefault('default_hooks', ConfigDict())
    hook = cfg.default_hooks.get('visualization')
    if hook is None:
        hook = cfg.default_hooks.visualization = ConfigDict(
            type=VISUALIZATION_HOOKS[scope])
    if interval < 1:
        raise ValueError(f'the show interval must be at least 1, got '
                         f'{interval}')
    show_dir = osp.abspath(osp.join(cfg.work_dir, show_dir))
    hook.interval = interval
    if scope == 'mmpretrain':
        hook.enable = True
        hook.out_dir = show_dir
    elif scope == 'mmseg':
        hook.draw = True
        cfg.visualizer.save_dir = show_dir
    else:  # mmdet (which draws every test image whatever the interval)
        hook.draw = True
        hook.test_out_dir = show_dir
    return show_dir


def add_test_time_augmentation(cfg: Config) -> None:
    """Test with the config's ``tta_model`` (mmdet's ``DetTTAModel``,
    mmseg's ``SegTTAModel``) around its model and its ``tta_pipeline``
    (multi-scale and flipped views) in the test dataloader, as mmdet's and
    mmseg's ``tools/test.py --tta`` do.

    Raises:
        ValueError: If the config has no ``tta_model`` or ``tta_pipeline``,
            or is a Mask R-CNN (mmdet's TTA model merges boxes only).
    """
    missing = [k for k in ('tta_model', 'tta_pipeline') if k not in cfg]
    name = osp.basename(cfg.filename or 'the config')
    roi_head = cfg.model.get('roi_head') or {}
    if 'mask_head' in roi_head:
        raise ValueError(
            f'--tta: {name} predicts masks, and mmdet\'s DetTTAModel merges '
            'the boxes of the augmented views only; test it without --tta')
    if missing:
        raise ValueError(
            f'--tta: {name} has no {" and no ".join(missing)}; add them to '
            'the config (the RetinaNet and ADE20K configs have them)')
    cfg.model = ConfigDict(**cfg.tta_model, module=cfg.model)
    dataset = cfg.test_dataloader.dataset
    while 'dataset' in dataset:  # dataset wrappers
        dataset = dataset.dataset
    dataset.pipeline = cfg.tta_pipeline


def add_dump_results(cfg: Config, out_file: str) -> None:
    """Also dump the raw predictions to ``out_file`` (a .pkl)."""
    if not out_file.endswith(('.pkl', '.pickle')):
        raise ValueError(f'--out must be a .pkl file, got {out_file}')
    dump = ConfigDict(type='DumpResults', out_file_path=out_file)
    evaluator = cfg.test_evaluator
    if isinstance(evaluator, (list, tuple)):
        cfg.test_evaluator = list(evaluator) + [dump]
    else:
        cfg.test_evaluator = [evaluator, dump]
