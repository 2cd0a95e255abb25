"""What a user sees when an input or the environment is wrong, and what the
tools print: the data checks, the message of a Python without the packages,
the curve tool's output file, the launchers' usage and the runner's console
(one summary line for the per-parameter optimizer settings, the processes'
device instead of mmengine's "GPU number")."""
import logging
import os
import os.path as osp
import shutil
import subprocess
import sys

import pytest
import torch.nn as nn
from mmengine.config import Config
from mmengine.device import get_device
from mmengine.model import BaseModel
from test_tools import ROOT, SEG_CONFIG

import mmscalable.engine.preflight as preflight
from mmscalable.engine.log_filters import (PARAMWISE_SETTING,
                                           ParamwiseSummaryFilter,
                                           ProcessCountFilter)
from mmscalable.engine.tool_runner import ToolRunner
from tools import env_check
from tools.analysis_tools import analyze_logs

ADE_CONFIG = osp.join(
    ROOT, 'configs/scalablevit/upernet_scalablevit-s_8xb2-160k_ade20k-'
    '512x512.py')


def ade_config(work_dir):
    """mmseg's ADE20K config of a UperNet, without its pretrained
    checkpoint (checked before the data)."""
    cfg = Config.fromfile(ADE_CONFIG)
    cfg.model.backbone.init_cfg = None
    cfg.work_dir = str(work_dir)
    return cfg


def test_missing_ade20k_data_root_is_named_with_where_it_was_looked_for(
        tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = ade_config(tmp_path / 'work')
    data_root = cfg.train_dataloader.dataset.data_root
    assert not osp.isabs(data_root)
    with pytest.raises(FileNotFoundError) as error:
        preflight.check_inputs(cfg)
    message = str(error.value)
    assert message.startswith(
        f'the data root {data_root} of train_dataloader (ADE20KDataset) '
        'does not exist')
    assert (f'{data_root} is a relative path, resolved against the current '
            f'working directory {tmp_path}: it was looked for at '
            f'{osp.normpath(tmp_path / data_root)}') in message
    assert ('--cfg-options train_dataloader.dataset.data_root=PATH'
            in message)
    assert 'docs/get_started.md' in message


def test_data_root_inside_dataset_wrappers_is_named_by_its_key(tmp_path):
    cfg = Config(
        dict(
            work_dir=str(tmp_path / 'work'),
            train_dataloader=dict(
                dataset=dict(
                    type='ConcatDataset',
                    datasets=[
                        dict(type='ADE20KDataset', data_root=str(tmp_path)),
                        dict(
                            type='RepeatDataset',
                            times=2,
                            dataset=dict(
                                type='ADE20KDataset',
                                data_root=str(tmp_path / 'missing')))
                    ]))))
    with pytest.raises(
            FileNotFoundError,
            match=rf'^the data root {tmp_path}/missing of train_dataloader '
            r'\(ADE20KDataset\) does not exist: .* --cfg-options '
            r'train_dataloader\.dataset\.datasets\.1\.dataset\.data_root='
            r'PATH$'):
        preflight.check_inputs(cfg)


@pytest.mark.slow
def test_train_stops_before_the_model_without_ade20k(tmp_path):
    """tools/train.py on mmseg's ADE20K, without the data, from a folder of
    the user's: the error comes before anything is built or logged."""
    result = subprocess.run([
        sys.executable,
        osp.join(ROOT, 'tools/train.py'), ADE_CONFIG, '--work-dir', 'work',
        '--cfg-options', 'model.backbone.init_cfg=None'
    ],
                            cwd=tmp_path,
                            capture_output=True,
                            text=True)
    assert result.returncode == 1
    assert result.stdout == ''
    assert ('FileNotFoundError: the data root data/ade/ADEChallengeData2016 '
            'of train_dataloader (ADE20KDataset) does not exist (data/ade/'
            'ADEChallengeData2016 is a relative path, resolved against the '
            f'current working directory {tmp_path}: it was looked for at '
            f'{tmp_path}/data/ade/ADEChallengeData2016)') in result.stderr


def test_missing_ade20k_folder_is_named(tmp_path):
    """A data root without its label maps stops at the check, naming the
    folder and its ``data_prefix`` key; a test that only formats its
    predictions does not need them."""
    cfg = ade_config(tmp_path / 'work')
    data_root = tmp_path / 'ade'
    (data_root / 'images/training').mkdir(parents=True)
    for split in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[split].dataset.data_root = str(data_root)
    with pytest.raises(FileNotFoundError) as error:
        preflight.check_inputs(cfg)
    message = str(error.value)
    assert message.startswith(
        f'the folder {data_root}/annotations/training of train_dataloader '
        "(ADE20KDataset; data_prefix.seg_map_path='annotations/training' "
        f'under the data root {data_root}) does not exist')
    assert 'relative path' not in message
    assert ('--cfg-options train_dataloader.dataset.data_prefix.seg_map_path'
            '=PATH') in message

    dataset = dict(cfg.test_dataloader.dataset,
                   data_prefix=dict(img_path='images/training',
                                    seg_map_path='annotations/test'))
    cfg.test_evaluator = dict(type='IoUMetric', format_only=True)
    assert not preflight.reads_labels(cfg, 'test_dataloader')
    assert preflight.reads_labels(cfg, 'val_dataloader')
    preflight.check_data_prefix(
        'test_dataloader', dataset, read_labels=False)
    with pytest.raises(FileNotFoundError, match='annotations/test'):
        preflight.check_data_prefix('test_dataloader', dataset)


def test_demo_ade_data_elsewhere_is_checked(tmp_path, demo_data_root):
    """The project's demo ADE set read from another folder than
    ``data/demo_ade``: its root and folders are checked as mmseg's
    ADE20K's."""
    cfg = Config.fromfile(SEG_CONFIG)
    cfg.work_dir = str(tmp_path / 'work')
    copy = tmp_path / 'my_ade'
    for split in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[split].dataset.data_root = str(copy)
    with pytest.raises(FileNotFoundError,
                       match=rf'^the data root {copy} of train_dataloader '
                       r'\(BaseSegDataset\) does not exist: '):
        preflight.check_inputs(cfg)
    shutil.copytree(demo_data_root / 'demo_ade', copy)
    preflight.check_inputs(cfg)
    shutil.rmtree(copy / 'images/validation')
    with pytest.raises(FileNotFoundError,
                       match=rf'^the folder {copy}/images/validation of '
                       r'val_dataloader \(BaseSegDataset; '
                       r"data_prefix.img_path='images/validation'"):
        preflight.check_inputs(cfg)


def test_demo_data_read_from_another_folder_says_where_and_what_to_do(
        tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = Config.fromfile(SEG_CONFIG)
    cfg.work_dir = str(tmp_path / 'work')
    with pytest.raises(FileNotFoundError) as error:
        preflight.check_inputs(cfg)
    message = str(error.value)
    assert message.startswith('data/demo_ade/ does not exist: the embedded '
                              'demo data data/demo_ade/ of train_dataloader '
                              '(BaseSegDataset) has not been generated')
    assert ('data is a relative path, resolved against the current working '
            f'directory {tmp_path}: the demo data was looked for in '
            f'{tmp_path}/data') in message
    assert message.endswith(
        f'Run the tool from the repository root {ROOT}, or make the demo '
        f'data in {tmp_path} with `python {ROOT}/tools/misc/'
        'make_demo_data.py` (or --make-demo-data)')


def base_python():
    """The interpreter the environment was made from (the system's, for a
    virtual environment)."""
    for name in ('python3', 'python'):
        path = osp.join(sys.base_prefix, 'bin', name)
        if osp.isfile(path):
            return path
    return sys.executable


@pytest.mark.parametrize('tool,args,package', [
    ('tools/train.py', [SEG_CONFIG, '--work-dir', 'w'], 'mmengine'),
    ('tools/analysis_tools/analyze_logs.py', ['plot_curve', 'w'], 'numpy'),
    ('tools/model_converters/official2mmscalable.py', ['refiner', 'a', 'b'],
     'torch'),
    ('demo/image_demo.py', ['a.jpg', SEG_CONFIG], 'torch'),
])
def test_tools_name_a_missing_package_and_the_environment(
        tmp_path, tool, args, package):
    """Run without site-packages (``-S``: what the system Python without
    the project's packages sees), from another folder."""
    script = osp.join(ROOT, tool)
    result = subprocess.run([base_python(), '-I', '-S', script, *args],
                            cwd=tmp_path,
                            capture_output=True,
                            text=True)
    assert result.returncode == 1
    message = result.stderr
    assert 'Traceback' not in message, message
    assert message.startswith(
        f'error: {script} needs the Python package {package!r}, which '), (
            message)
    assert f"No module named '{package}' (imported by " in message
    if not osp.isfile(osp.join(ROOT, '.venv/bin/python')):
        assert f'bash {ROOT}/tools/setup_env.sh' in message
    assert f'{ROOT}/.venv/bin/python {script} {" ".join(args)}' in message
    assert f'source {ROOT}/.venv/bin/activate' in message
    assert f'pip install {package}' in message


def test_missing_package_message_names_the_pip_package(
        tmp_path, monkeypatch):
    # A module missing from an installed package: the traceback says more.
    error = ModuleNotFoundError("No module named 'os.nothing'",
                                name='os.nothing')
    assert env_check.missing_package_message(error) == ''
    monkeypatch.setattr(env_check, '_package_is_missing', lambda name: True)
    monkeypatch.chdir(ROOT)  # paths relative to the repository
    monkeypatch.setattr(sys, 'argv', ['tools/test.py', 'a.py', 'b.pth'])
    error = ModuleNotFoundError("No module named 'mmseg.apis'",
                                name='mmseg.apis')
    # Another environment than the repository's: how to install there.
    monkeypatch.setattr(sys, 'prefix', str(tmp_path))
    message = env_check.missing_package_message(error)
    assert message.startswith("error: tools/test.py needs the Python package "
                              "'mmseg', which ")
    assert "No module named 'mmseg.apis'" in message
    assert 'pip install mmsegmentation' in message
    # The repository's environment: complete it.
    monkeypatch.setattr(sys, 'prefix', env_check.VENV)
    message = env_check.missing_package_message(error)
    assert message.endswith(f'The environment {env_check.VENV} is '
                            'incomplete: `bash tools/setup_env.sh` installs '
                            'what is missing.')


def write_scalars(run_dir):
    (run_dir / 'vis_data').mkdir(parents=True)
    (run_dir / 'vis_data/scalars.json').write_text(
        '{"loss": 2.0, "iter": 1, "step": 1}\n'
        '{"loss": 1.0, "iter": 2, "step": 2}\n'
        '{"coco/bbox_mAP": 0.5, "step": 1}\n')


def test_plot_curve_writes_next_to_the_log_and_says_where(
        tmp_path, monkeypatch, capsys):
    work_dir = tmp_path / 'work_dirs/a'
    write_scalars(work_dir / '20260101_000000')
    elsewhere = tmp_path / 'elsewhere'
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.setattr(sys, 'argv', [
        'analyze_logs.py', 'plot_curve',
        str(work_dir), '--keys', 'loss', 'coco/bbox_mAP'
    ])
    analyze_logs.main()
    expected = (work_dir / '20260101_000000/vis_data/'
                'curve_loss_coco-bbox_mAP.png')
    assert expected.is_file()
    assert os.listdir(elsewhere) == []
    assert capsys.readouterr().out == (
        f'curves of loss, coco/bbox_mAP written to {expected}\n')

    # --out: the picture goes there (folders made), the absolute path is
    # printed.
    monkeypatch.setattr(sys, 'argv', [
        'analyze_logs.py', 'plot_curve',
        str(work_dir), '--out', 'pictures/loss.png'
    ])
    analyze_logs.main()
    assert (elsewhere / 'pictures/loss.png').is_file()
    assert capsys.readouterr().out == (
        f'curves of loss written to {elsewhere}/pictures/loss.png\n')

    # A key no record has: the log and the keys it has, no traceback.
    monkeypatch.setattr(
        sys, 'argv',
        ['analyze_logs.py', 'plot_curve',
         str(work_dir), '--keys', 'mIoU'])
    with pytest.raises(SystemExit) as error:
        analyze_logs.main()
    assert error.value.code == (
        f"error: {work_dir}: no record has 'mIoU' (the records have "
        'coco/bbox_mAP, loss)')


@pytest.mark.parametrize('script,args', [('dist_train.sh', ['a.py']),
                                         ('dist_train.sh', ['a.py', 'x']),
                                         ('dist_test.sh', ['a.py', 'b.pth'])])
def test_dist_scripts_explain_the_process_count(script, args):
    result = subprocess.run(['bash', osp.join(ROOT, 'tools', script), *args],
                            capture_output=True,
                            text=True)
    assert result.returncode == 2
    assert 'NPROC: processes per node' in result.stderr
    assert 'CPU processes over gloo without GPUs' in result.stderr


@pytest.mark.parametrize('script,args', [('dist_train.sh', ['a.py', '2']),
                                         ('dist_test.sh', ['a.py', 'b', '2'])
                                         ])
def test_dist_scripts_name_a_python_without_torch(tmp_path, script, args):
    python = str(tmp_path / 'no-python')
    result = subprocess.run(['bash', osp.join(ROOT, 'tools', script), *args],
                            env=dict(os.environ, PYTHON=python),
                            capture_output=True,
                            text=True)
    assert result.returncode == 1
    assert result.stderr.startswith(
        f"error: {ROOT}/tools/{script} starts torchrun with '{python}' (not "
        'found), which has no torch.'), result.stderr
    assert f'source {ROOT}/.venv/bin/activate' in result.stderr


@pytest.mark.parametrize('device,backend,count,expected', [
    ('cpu', 'gloo', 2, 'Processes: 2 (CPU, gloo)'),
    ('cpu', None, 1, 'Processes: 1 (CPU)'),
    ('cuda', 'nccl', 8, 'Processes: 8 (one GPU each, nccl)'),
    ('cuda', None, 1, 'Processes: 1 (GPU)'),
])
def test_runtime_environment_names_processes_and_device(
        device, backend, count, expected):
    record = logging.makeLogRecord(
        dict(msg='\nRuntime environment:\n    Distributed training: True\n'
             f'    GPU number: {count}\n' + '-' * 60))
    assert ProcessCountFilter(device, backend).filter(record)
    assert f'\n    {expected}\n' in record.msg
    assert 'GPU number' not in record.msg


class TinyModel(BaseModel):

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.norm = nn.BatchNorm2d(4)
        self.head = nn.Linear(4, 2)

    def forward(self, inputs, data_samples=None, mode='tensor'):
        return self.head(self.norm(self.conv(inputs)).mean((2, 3)))


def test_runner_console_summarises_the_paramwise_settings(tmp_path, capsys):
    """The tools' runner: one console line for the optimizer's
    per-parameter settings, every line in the log file; the processes and
    their device instead of "GPU number"."""
    model = TinyModel()
    runner = ToolRunner(
        model=model, work_dir=str(tmp_path), experiment_name='messages')
    runner.build_optim_wrapper(
        dict(
            optimizer=dict(type='SGD', lr=0.1, weight_decay=1e-4),
            paramwise_cfg=dict(norm_decay_mult=0., bias_decay_mult=0.)))
    runner.logger.info('after the optimizer')
    for handler in runner.logger.handlers:
        handler.flush()
    console = capsys.readouterr().out
    with open(runner.logger.log_file) as f:
        log = f.read()

    # Every norm parameter and every other bias gets weight_decay=0.
    zero_decay = sum(
        isinstance(module, nn.BatchNorm2d) or name == 'bias'
        for module in model.modules()
        for name, _ in module.named_parameters(recurse=False))
    logged = [
        line for line in log.splitlines()
        if PARAMWISE_SETTING.match(line.split(' - ')[-1])
    ]
    assert len(logged) == zero_decay
    assert 'paramwise_options' not in console
    summaries = [line for line in console.splitlines()
                 if 'paramwise_cfg' in line]
    assert len(summaries) == 1, console
    assert (f'paramwise_cfg: {zero_decay} parameter settings of '
            f'{zero_decay} parameters (weight_decay=0.0 for {zero_decay}); '
            f'the full list is in {runner.logger.log_file}') in summaries[0]
    # Printed where the settings were logged: before the next line.
    assert console.index('paramwise_cfg') < console.index(
        'after the optimizer')

    processes = ProcessCountFilter(get_device()).describe(1)
    for text in (console, log):
        assert processes in text
        assert 'GPU number' not in text


def test_summary_without_a_log_file_says_so():
    handler = logging.StreamHandler()
    summary_filter = ParamwiseSummaryFilter(handler)
    for name in ('a.weight', 'a.bias'):
        record = logging.makeLogRecord(
            dict(msg=f'paramwise_options -- {name}:lr_mult=0.1'))
        assert not summary_filter.filter(record)
    assert summary_filter.summary() == (
        'paramwise_cfg: 2 parameter settings of 2 parameters (lr_mult=0.1 '
        'for 2); the full list is not logged to a file')
