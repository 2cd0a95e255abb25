# Copyright (c) mmscalable contributors. All rights reserved.
"""Config preparation shared by ``tools/train.py`` and ``tools/test.py``.

The tools serve mmdet, mmseg and mmpretrain configs alike; what differs
between the libraries (the visualization hook's options) is decided by the
config's ``default_scope``.
"""
import os.path as osp

from mmengine.config import Config, ConfigDict

from mmscalable.compat import init_cpu_process_group, prepare_launcher
from .preflight import check_inputs, config_datasets

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
    """Check the inputs, generate the demo data the config needs, start the
    CPU process group if there is one to start, then build the runner."""
    from mmengine.registry import RUNNERS
    from mmengine.runner import Runner
    ensure_config_data(cfg)
    check_inputs(cfg)
    init_cpu_process_group(cfg)
    if 'runner_type' not in cfg:
        return Runner.from_cfg(cfg)
    return RUNNERS.build(cfg)


def add_tool_hooks(cfg: Config) -> None:
    """Append the hooks of :data:`TOOL_HOOKS` the config does not list."""
    hooks = list(cfg.get('custom_hooks') or [])
    listed = {hook.get('type') for hook in hooks}
    for hook_type in TOOL_HOOKS:
        if hook_type not in listed and hook_type.split('.')[-1] not in listed:
            hooks.append(ConfigDict(type=hook_type))
    cfg.custom_hooks = hooks


def ensure_config_data(cfg: Config) -> None:
    """Generate the embedded demo data if the config trains or tests on it."""
    from mmscalable.datasets.demo_data import DEMO_DIRS, ensure_demo_data
    roots = set()
    for _, dataset in config_datasets(cfg):
        data_root = dataset.get('data_root')
        if data_root and osp.basename(osp.normpath(data_root)) in DEMO_DIRS:
            roots.add(osp.dirname(osp.normpath(data_root)) or '.')
    for root in sorted(roots):
        ensure_demo_data(root=root)


def add_visualization(cfg: Config, show_dir: str) -> None:
    """Make the test loop paint its predictions into ``show_dir``."""
    hook = cfg.get('default_hooks', {}).get('visualization')
    if hook is None:
        raise RuntimeError('--show-dir needs a `visualization` hook in '
                           '`default_hooks` of the config')
    scope = cfg.get('default_scope')
    if scope == 'mmpretrain':
        hook.enable = True
        hook.out_dir = show_dir
    elif scope == 'mmseg':
        hook.draw = True
        cfg.visualizer.save_dir = show_dir
    else:  # mmdet
        hook.draw = True
        hook.test_out_dir = show_dir


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
