# Copyright (c) mmscalable contributors. All rights reserved.
"""mmscalable: scalable attention backbones for OpenMMLab 2.0."""
from .version import __version__, version_info

__all__ = ['__version__', 'version_info']


def _integrate_with_mmengine():
    # mmengine 0.10.7 loads its own checkpoints with a bare ``torch.load``,
    # which torch >= 2.6 refuses (``weights_only=True`` by default). Any entry
    # point that imports mmscalable (configs' ``custom_imports``, our tools)
    # gets a loader that reads them; see ``mmscalable.utils.checkpoint``.
    # It also makes ``_base_ = ['mmscalable::...']`` resolvable.
    try:
        from .utils.checkpoint import register_checkpoint_loaders
        from .utils.mim import register_config_package
    except ImportError:  # mmengine is absent: only the ops are usable.
        return
    register_checkpoint_loaders()
    register_config_package()


_integrate_with_mmengine()
