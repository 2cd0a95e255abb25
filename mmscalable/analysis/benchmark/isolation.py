# Copyright (c) mmscalable contributors. All rights reserved.
"""One measurement in a fresh Python process.

Peak CPU memory needs a process of its own: with ``isolate=True`` each
record is measured by ``python -m mmscalable.analysis.benchmark.isolation
measure TASK RESULT``, which builds only the model it times (from the same
seed) and reports, beside the weights' size, its resident high-water mark
while it builds the model and runs the calls (``peak_rss_mib``; on Linux
the mark is reset after the imports, elsewhere it covers the whole process)
and its resident size before the model was built (``base_rss_mib``:
interpreter and imports, included in the peak). The agreement check and the
FLOPs of each size run in a fresh process of their own too (``check``), so
that a crash there (the reference at sizes its explicit maps cannot hold) is
recorded against that size and the run goes on.

``TASK`` is the task's JSON, ``RESULT`` the path the process writes its
outcome to (JSON). The package does not import this module: run as
``python -m``, it is then loaded once, as the program.
"""
import json
import os
import os.path as osp
import signal
import subprocess
import sys
import tempfile
from typing import Callable, List, Optional, Sequence

import torch

from .agreement import check_setting
from .backends import sdpa_backends
from .memory import peak_rss_mib, reset_peak_rss, status_mib, weights_mib
from .models import ModelPair, Setting, compiled, resolve_builder
from .records import measure, recorded_failure
from .timing import DTYPES, forward_fn


def check_isolated(task: str, result_path: str) -> None:
    """Check agreement (and count the FLOPs) of one model at one size in
    this process and write the outcome to ``result_path`` (JSON): ``params``
    with ``rel_error`` and ``macs``, or ``status`` and ``error`` (with
    ``rel_error`` for a mismatch).

    Args:
        task (str): JSON of ``model`` (a name that :func:`resolve_builder`
            knows), ``setting``, ``device`` and ``count_model_flops``.
        result_path (str): Where to write the outcome.
    """
    task = json.loads(task)
    device = torch.device(task['device'])
    setting = Setting.parse(task['setting'])
    pair = ModelPair.build(resolve_builder(task['model']), device)
    outcome = dict(params=pair.params)
    try:
        outcome['rel_error'], outcome['macs'] = check_setting(
            task['model'], setting, pair, device, task['count_model_flops'],
            print)
    except Exception as error:  # noqa: B902  (reported to the parent)
        outcome['status'], outcome['error'] = recorded_failure(
            error, 'agreement check', device, print)
        outcome['rel_error'] = getattr(error, 'rel_error', None)
    with open(result_path, 'w') as f:
        json.dump(outcome, f)


def measure_isolated(task: str, result_path: str) -> None:
    """Measure one record in this process and write the measurement to
    ``result_path`` (JSON).

    The model is built alone, from the same seed as in the calling process.
    ``base_rss_mib`` is this process's resident size before the model is
    built (interpreter and imports), ``peak_rss_mib`` its resident
    high-water mark at the end: since then where it can be reset (Linux),
    else over the whole process (the imports' own peak included).

    Args:
        task (str): JSON of ``model`` (a name that :func:`resolve_builder`
            knows), ``setting``, ``mode``, ``dtype``, ``impl``,
            ``compile``, ``device``, ``warmup`` and ``repeats``.
        result_path (str): Where to write the measurement.
    """
    task = json.loads(task)
    device = torch.device(task['device'])
    builder = resolve_builder(task['model'])
    # Importing leaves a peak of its own (1 GiB with torch's CUDA build)
    # that would hide small models.
    reset_peak_rss()
    base = status_mib('VmRSS') or peak_rss_mib()
    torch.manual_seed(0)
    model = builder(task['impl']).to(device)
    measurement = dict(weights_mib=weights_mib(model))
    model = compiled(model, task['compile'])
    setting = Setting.parse(task['setting'])
    # The profiler's own allocations would count in the peak: the SDPA
    # backends are read after it.
    measurement.update(
        measure(model, setting, task['mode'], task['dtype'], device,
                task['warmup'], task['repeats'], print, count_sdpa=False))
    measurement.update(peak_rss_mib=peak_rss_mib(), base_rss_mib=base)
    if measurement['status'] == 'ok':
        x = torch.randn(setting.batch, 3, setting.height, setting.width,
                        device=device)
        measurement['sdpa_backends'] = sdpa_backends(
            forward_fn(model, x, task['mode'], DTYPES[task['dtype']]))
    with open(result_path, 'w') as f:
        json.dump(measurement, f)


_TASKS = dict(check=check_isolated, measure=measure_isolated)


def run_isolated_task(kind: str, task: str, result_path: str) -> None:
    """Run one task in this process.

    Args:
        kind (str): ``'check'`` (:func:`check_isolated`) or ``'measure'``
            (:func:`measure_isolated`).
        task (str): The task's JSON.
        result_path (str): Where to write its outcome.
    """
    if kind not in _TASKS:
        raise ValueError(f'unknown isolated task {kind!r}; one of '
                         f'{sorted(_TASKS)}')
    _TASKS[kind](task, result_path)


def child_command(kind: str, task: str, result_path: str) -> List[str]:
    """The command line of the fresh process that runs one task of
    :func:`run_isolated_task`."""
    return [
        sys.executable, '-m', 'mmscalable.analysis.benchmark.isolation',
        kind, task, result_path
    ]


def _child_env() -> dict:
    """This environment, with the folder that holds the package first on
    ``PYTHONPATH`` unless it is a site-packages folder (a checkout that is
    not installed, as the command-line tool runs it)."""
    import mmscalable
    env = dict(os.environ)
    package_root = osp.dirname(osp.dirname(osp.abspath(mmscalable.__file__)))
    if osp.basename(package_root) not in ('site-packages', 'dist-packages'):
        env['PYTHONPATH'] = os.pathsep.join(
            filter(None, [package_root, env.get('PYTHONPATH')]))
    return env


def _child_failure(child: subprocess.CompletedProcess,
                   log: Callable[[str], None]) -> dict:
    """The status and reason of a fresh process that wrote no outcome:
    killed as the out-of-memory killer does, crashed on a signal, or exited
    with an error."""
    if child.returncode == -signal.SIGKILL:
        return dict(
            status='out of memory',
            error='the process running it was killed (SIGKILL), as the '
            'out-of-memory killer does')
    output = (child.stdout + child.stderr).strip()
    log(output[-3000:])
    if child.returncode < 0:
        name = signal.Signals(-child.returncode).name
        return dict(
            status='error',
            error=f'the process running it crashed ({name})')
    last = output.splitlines()[-1][:300] if output else ''
    return dict(
        status='error',
        error=f'the process running it exited with {child.returncode}: '
        f'{last}')


def run_in_child(kind: str, task: dict, log: Callable[[str], None]) -> dict:
    """The outcome of one task of :func:`run_isolated_task` in a fresh
    process, or the status and reason of the process's failure.

    Args:
        kind (str): ``'check'`` or ``'measure'``.
        task (dict): The task.
        log (Callable): Where the output of a failed process goes.
    """
    with tempfile.TemporaryDirectory() as folder:
        result_path = osp.join(folder, 'result.json')
        child = subprocess.run(
            child_command(kind, json.dumps(task), result_path),
            env=_child_env(),
            capture_output=True,
            text=True)
        if child.returncode == 0 and osp.isfile(result_path):
            with open(result_path) as f:
                return json.load(f)
    return _child_failure(child, log)


def measure_in_child(name: str, setting: Setting, mode: str, dtype: str,
                     impl: str, compile_mode: Optional[str],
                     device: torch.device, warmup: int, repeats: int,
                     log: Callable[[str], None]) -> dict:
    """:func:`measure_isolated`'s measurement of one record, from a fresh
    process, or the status and reason of its failure.

    Args:
        name (str): A model name or config path.
        setting (Setting): Input size and batch.
        mode (str): ``'inference'`` or ``'train'``.
        dtype (str): A key of :data:`DTYPES`.
        impl (str): ``'reference'`` or ``'fast'``.
        compile_mode (str, optional): The ``torch.compile`` mode, or None.
        device (torch.device): Where to run.
        warmup (int): Untimed calls first.
        repeats (int): Timed calls.
        log (Callable): Progress printer.
    """
    task = dict(
        model=name,
        setting=str(setting),
        mode=mode,
        dtype=dtype,
        impl=impl,
        compile=compile_mode,
        device=str(device),
        warmup=warmup,
        repeats=repeats)
    return run_in_child('measure', task, log)


def check_in_child(name: str, setting: Setting, device: torch.device,
                   count_model_flops: bool,
                   log: Callable[[str], None]) -> dict:
    """:func:`check_isolated`'s outcome for one size, from a fresh process;
    a crash of that process is recorded as the check's failure.

    Args:
        name (str): A model name or config path.
        setting (Setting): Input size.
        device (torch.device): Where to run.
        count_model_flops (bool): Count the reference's FLOPs too.
        log (Callable): Progress printer.
    """
    task = dict(model=name, setting=str(setting), device=str(device),
                count_model_flops=count_model_flops)
    outcome = run_in_child('check', task, log)
    if 'status' in outcome:
        log(f'{name} {setting}: {outcome["status"]}: {outcome["error"]}')
    else:
        log(f'{name} {setting}: fast and reference agree (relative '
            f'error {outcome["rel_error"]:.2g})')
    return outcome


def main(argv: Optional[Sequence[str]] = None) -> None:
    """Run the task named on the command line: ``KIND TASK RESULT``."""
    kind, task, result_path = sys.argv[1:] if argv is None else argv
    run_isolated_task(kind, task, result_path)


if __name__ == '__main__':
    main()
