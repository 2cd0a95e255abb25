# Copyright (c) mmscalable contributors. All rights reserved.
"""Filters on the runner's logger (``MMLogger``) that keep the console
readable and the runtime facts right, without changing mmengine.

- :class:`ParamwiseSummaryFilter` (console handler only): the optimizer
  constructors log one line per parameter setting (mmengine's
  ``DefaultOptimWrapperConstructor``: ``paramwise_options -- NAME:KEY=VALUE``,
  hundreds for a UperNet; mmdet's layer-decay constructor: ``set param NAME
  as id N`` and a ``Param groups = {...}`` dump). The console gets one
  summary line instead; the log file keeps every line.
- :class:`ProcessCountFilter` (the logger, so console and file): mmengine's
  runtime environment says ``GPU number: N`` with N the number of
  processes, CPU processes included; it becomes ``Processes: N (device)``.

The tools install both through :func:`install_log_filters` as soon as the
runner has built its logger (``mmscalable.engine.tool_runner``).
"""
import json
import logging
import re
from collections import Counter
from typing import Optional

import torch.distributed as dist
from mmengine.device import get_device

# mmengine's DefaultOptimWrapperConstructor (and mmseg's copy of it).
PARAMWISE_SETTING = re.compile(
    r'^paramwise_options -- (?P<name>[^:]+):(?P<key>[^=]+)=(?P<value>.*)$')
# mmdet's LearningRateDecayOptimizerConstructor.
LAYER_ID = re.compile(r'^set param (?P<name>\S+) as id (?P<value>-?\d+)$')
PARAM_GROUPS = 'Param groups = '
# mmengine's runtime environment block (Runner._log_env).
GPU_NUMBER = re.compile(r'^(?P<indent>[ \t]*)GPU number: (?P<count>\d+)$',
                        re.MULTILINE)
# Settings named in the summary line; the others are counted as "more".
SHOWN_SETTINGS = 6


class ParamwiseSummaryFilter(logging.Filter):
    """Hold back the per-parameter optimizer lines from a console handler
    and print one summary line in their place.

    The summary goes out just before the next record the handler prints
    (the constructor logs its lines in one go), or at :meth:`flush`.

    Args:
        handler (logging.Handler): The console handler this filter is added
            to; the summary is handed to it.
        log_file (str, optional): The file that keeps every line, named in
            the summary.
    """

    def __init__(self,
                 handler: logging.Handler,
                 log_file: Optional[str] = None):
        super().__init__()
        self.handler = handler
        self.log_file = log_file
        self._reset()

    def _reset(self) -> None:
        self._template = None  # the first held-back record
        self._settings = Counter()  # (key, value) -> lines
        self._parameters = set()
        self._layer_ids = Counter()  # layer id -> parameters
        self._param_groups = None

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        setting = PARAMWISE_SETTING.match(message)
        layer = LAYER_ID.match(message)
        if setting:
            self._settings[setting['key'], setting['value']] += 1
            self._parameters.add(setting['name'])
        elif layer:
            self._layer_ids[int(layer['value'])] += 1
        elif message.startswith(PARAM_GROUPS):
            try:
                self._param_groups = len(
                    json.loads(message[len(PARAM_GROUPS):]))
            except ValueError:
                self._param_groups = -1
        else:
            self.flush()
            return True
        if self._template is None:
            self._template = record
        return False

    def summary(self) -> str:
        """The line that stands for the held-back lines ('' if none)."""
        parts = []
        if self._settings:
            settings = [
                f'{key}={value} for {count}'
                for (key, value), count in self._settings.most_common()
            ]
            more = len(settings) - SHOWN_SETTINGS
            shown = ', '.join(settings[:SHOWN_SETTINGS])
            if more > 0:
                shown += f' and {more} more'
            total = sum(self._settings.values())
            parts.append(
                f'paramwise_cfg: {total} parameter settings of '
                f'{len(self._parameters)} parameters ({shown})')
        if self._layer_ids:
            parts.append(
                f'layer-wise lr decay: {sum(self._layer_ids.values())} '
                f'parameters in {len(self._layer_ids)} layers')
        if self._param_groups is not None:
            groups = ('' if self._param_groups < 0 else
                      f' ({self._param_groups} groups)')
            parts.append(f'the parameter groups{groups}')
        if not parts:
            return ''
        where = (f'the full list is in {self.log_file}' if self.log_file
                 else 'the full list is not logged to a file')
        return f'{"; ".join(parts)}; {where}'

    def flush(self) -> None:
        """Print the summary of the held-back lines, if any."""
        template, summary = self._template, self.summary()
        self._reset()
        if template is None or not summary:
            return
        record = logging.makeLogRecord(
            dict(template.__dict__, msg=summary, args=None))
        self.handler.handle(record)


class ProcessCountFilter(logging.Filter):
    """Rewrite the ``GPU number: N`` of mmengine's runtime environment
    block as ``Processes: N (device[, backend])``: mmengine writes the
    number of processes there, also when they run on the CPU.

    Args:
        device (str): The device the processes run on (mmengine's
            ``get_device()``: ``'cpu'``, ``'cuda'``...).
        backend (str, optional): The process group's backend (``'gloo'``,
            ``'nccl'``), None for a run without one.
    """

    def __init__(self, device: str, backend: Optional[str] = None):
        super().__init__()
        self.device = device
        self.backend = backend

    def describe(self, count: int) -> str:
        """``'Processes: 2 (CPU, gloo)'``, ``'Processes: 8 (one GPU each,
        nccl)'``..."""
        if self.device == 'cpu':
            where = 'CPU'
        elif self.device == 'cuda':
            where = 'one GPU each' if count > 1 else 'GPU'
        else:
            where = self.device
        if self.backend:
            where += f', {self.backend}'
        return f'Processes: {count} ({where})'

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str) and 'GPU number: ' in record.msg:
            record.msg = GPU_NUMBER.sub(
                lambda m: m['indent'] + self.describe(int(m['count'])),
                record.msg)
        return True


def console_handlers(logger: logging.Logger) -> list:
    """The handlers of ``logger`` that print to a stream, not to a file
    (``logging.FileHandler`` is a ``StreamHandler`` too)."""
    return [
        handler for handler in logger.handlers
        if isinstance(handler, logging.StreamHandler)
        and not isinstance(handler, logging.FileHandler)
    ]


def log_file_of(logger: logging.Logger) -> Optional[str]:
    """The file ``logger`` writes to, if any."""
    for handler in logger.handlers:
        if isinstance(handler, logging.FileHandler):
            return handler.baseFilename
    return None


def install_log_filters(logger: logging.Logger,
                        device: Optional[str] = None,
                        backend: Optional[str] = None) -> None:
    """Add :class:`ProcessCountFilter` to ``logger`` and
    :class:`ParamwiseSummaryFilter` to its console handlers, once.

    Args:
        logger (logging.Logger): The runner's ``MMLogger``.
        device (str, optional): The device the processes run on; by
            default mmengine's ``get_device()``.
        backend (str, optional): The process group's backend; by default
            that of the process group, if one is started.
    """
    if device is None:
        device = get_device()
    if backend is None and dist.is_available() and dist.is_initialized():
        backend = dist.get_backend()
    if not any(isinstance(f, ProcessCountFilter) for f in logger.filters):
        logger.addFilter(ProcessCountFilter(device, backend))
    log_file = log_file_of(logger)
    for handler in console_handlers(logger):
        if not any(
                isinstance(f, ParamwiseSummaryFilter)
                for f in handler.filters):
            handler.addFilter(ParamwiseSummaryFilter(handler, log_file))
