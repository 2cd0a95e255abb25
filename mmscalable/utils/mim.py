# Copyright (c) mmscalable contributors. All rights reserved.
"""Let mmengine resolve ``mmscalable::`` config paths.

mmengine resolves ``_base_ = ['pkg::path']`` only for the packages in its
``MODULE2PACKAGE`` table, and finds their configs at
``<installed path>/.mim/configs``. Two things are needed for mmscalable:
its entry in the table, and the installed path of an editable (PEP 660)
install, for which mmengine's ``get_installed_path`` returns a directory in
site-packages that does not exist (the package is loaded from the
repository through an import hook).
"""
import os.path as osp

_PACKAGE = 'mmscalable'
PACKAGE_DIR = osp.dirname(osp.dirname(osp.abspath(__file__)))


def register_config_package() -> None:
    """Make ``mmscalable::`` usable in configs (idempotent)."""
    from mmengine.config import config as config_module
    from mmengine.config import utils as config_utils

    config_utils.MODULE2PACKAGE.setdefault(_PACKAGE, _PACKAGE)
    original = config_module.get_installed_path
    if getattr(original, 'knows_mmscalable', False):
        return

    def get_installed_path(package: str) -> str:
        if package == _PACKAGE:
            return PACKAGE_DIR
        return original(package)

    get_installed_path.knows_mmscalable = True
    config_module.get_installed_path = get_installed_path
