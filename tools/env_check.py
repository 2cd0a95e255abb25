# Copyright (c) mmscalable contributors. All rights reserved.
"""Explain a missing package when a tool is run with the wrong Python.

Every tool imports this module before anything outside the standard
library. Run with a Python that lacks a package the tool needs (typically
the system ``python3`` instead of the repository's ``.venv``), the tool then
stops with a message that names the package, the environment to run it in
and how to install it, instead of a bare ``No module named 'mmengine'``.

Only the standard library is imported here: this module must work in
exactly the environments that lack the rest.
"""
import importlib.util
import os
import os.path as osp
import shlex
import sys
import traceback

# The repository root: this file is tools/env_check.py.
REPOSITORY = osp.dirname(osp.dirname(osp.abspath(__file__)))
VENV = osp.join(REPOSITORY, '.venv')
# Import names whose pip package is named otherwise.
PIP_NAMES = {
    'cv2': 'opencv-python',
    'mmseg': 'mmsegmentation',
    'PIL': 'pillow',
    'sklearn': 'scikit-learn',
    'yaml': 'pyyaml',
}


def _in_repository(path: str) -> str:
    """``path`` (inside the repository) as the user can type it from the
    current folder: relative at the repository root, absolute elsewhere."""
    if osp.abspath(os.getcwd()) == REPOSITORY:
        return osp.relpath(path, REPOSITORY)
    return path


def _import_site(tb) -> str:
    """' (imported by FILE, line N)' for the innermost frame of ``tb`` that
    is a file (not importlib's own frames), or ''."""
    frames = [
        frame for frame in traceback.extract_tb(tb)
        if not frame.filename.startswith('<')
    ]
    if not frames:
        return ''
    return f' (imported by {frames[-1].filename}, line {frames[-1].lineno})'


def _package_is_missing(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is None
    except (ImportError, ValueError):
        return True


def missing_package_message(error: ModuleNotFoundError, tb=None) -> str:
    """What to tell a user whose tool failed with ``error``, or '' when the
    top-level package of the missing module is installed (then the module
    is missing for another reason, and the traceback says more).

    Args:
        error (ModuleNotFoundError): The error the tool stopped with.
        tb (traceback, optional): Its traceback, to name the importing file.

    Returns:
        str: The message, several lines.
    """
    package = (error.name or '').split('.')[0]
    if not package or not _package_is_missing(package):
        return ''
    tool = sys.argv[0] or 'TOOL'
    venv_python = _in_repository(osp.join(VENV, 'bin', 'python'))
    activate = _in_repository(osp.join(VENV, 'bin', 'activate'))
    setup = _in_repository(osp.join(REPOSITORY, 'tools', 'setup_env.sh'))
    rerun = ' '.join([venv_python] +
                     [shlex.quote(arg) for arg in [tool] + sys.argv[1:]])
    lines = [
        f'error: {tool} needs the Python package {package!r}, which '
        f'{sys.executable or "this Python"} does not have: No module named '
        f'{error.name!r}{_import_site(tb)}.'
    ]
    if osp.realpath(sys.prefix) == osp.realpath(VENV):
        lines.append(f'The environment {VENV} is incomplete: `bash {setup}` '
                     'installs what is missing.')
        return '\n'.join(lines)
    if osp.isfile(osp.join(VENV, 'bin', 'python')):
        lines += [
            f'mmscalable runs in the environment {VENV}: run the tool with '
            f'its Python,', f'    {rerun}',
            f'or activate the environment first (source {activate}).'
        ]
    else:
        lines += [
            f'mmscalable runs in the environment {VENV}, which does not '
            'exist yet: create it (the first time, mmcv 2.1.0 is built from '
            'source: about 17 minutes on 2 cores), then run the tool with '
            'its Python,', f'    bash {setup}', f'    {rerun}',
            f'or activate the environment first (source {activate}).'
        ]
    if package == 'mmscalable':
        lines.append('In an environment of your own, install mmscalable '
                     'with its dependencies: pip install -e '
                     f'{_in_repository(REPOSITORY)}')
    else:
        requirements = _in_repository(osp.join(REPOSITORY, 'requirements'))
        lines.append(
            'In an environment of your own, install the package: pip '
            f'install {PIP_NAMES.get(package, package)} (the versions '
            f'mmscalable supports are in {requirements}/; mmcv needs its '
            'compiled ops, see the README).')
    return '\n'.join(lines)


def _explain_missing_packages(exc_type, error, tb):
    if issubclass(exc_type, ModuleNotFoundError):
        message = missing_package_message(error, tb)
        if message:
            print(message, file=sys.stderr)
            return
    _previous_excepthook(exc_type, error, tb)


_previous_excepthook = sys.excepthook
sys.excepthook = _explain_missing_packages
