import os
import sys
from pathlib import Path

import pytest

# Tests import the oracle in tests/reference and the tools as modules.
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, 'tests'))
sys.path.insert(0, ROOT)


@pytest.fixture(scope='session')
def demo_data_root(tmp_path_factory):
    """A directory holding the embedded demo sets (``demo_coco``,
    ``demo_ade``, ``demo_cls``), generated once per test session: the tools
    do not generate them."""
    from mmscalable.datasets import ensure_demo_data
    root = tmp_path_factory.mktemp('demo_data')
    ensure_demo_data(root=str(root))
    return root


@pytest.fixture(scope='session')
def link_demo_data(demo_data_root):
    """``link_demo_data(path)`` makes ``path/data`` a link to the session's
    demo sets, so that the demo configs (``data_root='data/demo_*'``) run
    from ``path`` find them; it returns ``path``.

    A test that damages the data must copy it (``shutil.copytree`` copies
    the linked files).
    """

    def link(path):
        Path(path, 'data').symlink_to(demo_data_root, target_is_directory=True)
        return path

    return link


@pytest.fixture
def demo_data(tmp_path, link_demo_data):
    """``tmp_path/data`` with the session's demo sets: tools run on the demo
    configs from ``tmp_path`` find them."""
    link_demo_data(tmp_path)
    return tmp_path / 'data'


def pytest_configure(config):
    """In a pytest-xdist worker, torch and the tools the tests start use
    one thread: the workers already share the cores, and more threads than
    cores make OpenMP's threads wait for each other."""
    if os.environ.get('PYTEST_XDIST_WORKER'):
        for name in ('OMP_NUM_THREADS', 'MKL_NUM_THREADS'):
            os.environ[name] = '1'
        import torch
        torch.set_num_threads(1)
