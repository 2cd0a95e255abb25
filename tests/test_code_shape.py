"""Files and functions a reader can hold: no module of the package over 600
lines, no function body over 60 lines (its docstring aside) in the package
or the tools."""
import ast
import glob
import os.path as osp

import pytest

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
MAX_MODULE_LINES = 600
MAX_BODY_LINES = 60


def _python_files(folder):
    return sorted(
        glob.glob(osp.join(ROOT, folder, '**', '*.py'), recursive=True))


def _body_lines(function):
    body = function.body
    if (body and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)):
        body = body[1:]
    return body[-1].end_lineno - body[0].lineno + 1 if body else 0


def test_no_module_of_the_package_is_over_600_lines():
    long = {}
    for path in _python_files('mmscalable'):
        with open(path) as f:
            lines = sum(1 for _ in f)
        if lines > MAX_MODULE_LINES:
            long[osp.relpath(path, ROOT)] = lines
    assert not long, long


@pytest.mark.parametrize('folder', ['mmscalable', 'tools'])
def test_no_function_body_is_over_60_lines(folder):
    long = []
    for path in _python_files(folder):
        with open(path) as f:
            tree = ast.parse(f.read(), path)
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = _body_lines(node)
                if lines > MAX_BODY_LINES:
                    long.append(f'{osp.relpath(path, ROOT)}:{node.lineno} '
                                f'{node.name}: {lines} lines')
    assert not long, long
