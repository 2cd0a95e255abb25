# Copyright (c) mmscalable contributors. All rights reserved.
"""The runner the tools build: mmengine's ``Runner`` whose logger gets the
filters of :mod:`mmscalable.engine.log_filters` as soon as it exists, before
the runner logs its environment."""
from mmengine.logging import MMLogger
from mmengine.runner import Runner

from .log_filters import install_log_filters


class ToolRunner(Runner):
    """mmengine's ``Runner`` with a console that summarises the optimizer's
    per-parameter settings and names the processes' device (see
    :mod:`mmscalable.engine.log_filters`); nothing else differs."""

    def build_logger(self, *args, **kwargs) -> MMLogger:
        logger = super().build_logger(*args, **kwargs)
        install_log_filters(logger)
        return logger
