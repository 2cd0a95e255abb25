# Copyright (c) mmscalable contributors. All rights reserved.
"""mmscalable: scalable attention backbones for OpenMMLab 2.0."""
import importlib.metadata

from .version import __version__, version_info

__all__ = ['__version__', 'version_info']

# The dependency versions this release supports (``install_requires`` in
# setup.py declares the same ranges; ``requirements/constraints.txt`` pins
# the stack the tests run on). The fixes in ``mmscalable.compat`` were
# written for these versions.
SUPPORTED_VERSIONS = {
    # Older torch lacks APIs the package relies on; torch 2.14 compiles
    # extensions as C++20, which mmcv 2.1.0's ops do not build with. Within
    # the range, ``mmscalable.torch_compat`` covers what older releases miss.
    'torch': ('2.1', '2.14'),
    'mmengine': ('0.10.0', '1.0.0'),
    'mmcv': ('2.0.0', '2.2.0'),
}


def _release(version: str) -> tuple:
    """``'2.1.0rc1'`` -> ``(2, 1, 0)``: the numeric release, enough for
    the half-open ranges above."""
    parts = []
    for part in version.split('+')[0].split('.')[:3]:
        digits = ''.join(c for c in part if c.isdigit()) or '0'
        parts.append(int(digits))
    return tuple(parts + [0] * (3 - len(parts)))


def check_dependency_versions() -> None:
    """Refuse to import next to a torch, mmengine or mmcv out of range.

    A package that is not installed is not checked (the ops need only torch;
    without torch, importing the package fails on its own).

    Raises:
        ImportError: Naming the package, its version and the range.
    """
    for package, (low, high) in SUPPORTED_VERSIONS.items():
        try:
            found = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            if package == 'mmcv':  # mmcv-lite: the same code, no ops.
                try:
                    found = importlib.metadata.version('mmcv-lite')
                except importlib.metadata.PackageNotFoundError:
                    continue
            else:
                continue
        if not _release(low) <= _release(found) < _release(high):
            raise ImportError(
                f'mmscalable {__version__} needs {package}>={low},<{high}, '
                f'but {package} {found} is installed. Install a version in '
                f'that range, e.g. `pip install "{package}>={low},<{high}"` '
                '(requirements/constraints.txt pins the tested stack).')


check_dependency_versions()

from .compat import apply_fixes  # noqa: E402
from .model_hub import register_classification_models  # noqa: E402

apply_fixes()
register_classification_models()
