# Copyright (c) mmscalable contributors. All rights reserved.
"""Hooks that make interrupted runs resumable and bad checkpoints visible.

``tools/train.py`` and ``tools/test.py`` add both to every config; with
another entry point, list them in ``custom_hooks``::

    custom_hooks = [
        dict(type='mmscalable.RandomStateHook'),
        dict(type='mmscalable.CheckpointMatchHook'),
    ]
"""
import logging
import random
from typing import Dict, List, Optional

import numpy as np
import torch
from mmengine.dist import all_gather_object, get_rank, get_world_size
from mmengine.hooks import CheckpointHook, Hook
from mmengine.logging import print_log
from mmengine.model import BaseTTAModel, is_model_wrapper
from mmengine.runner import IterBasedTrainLoop

from mmscalable.registry import HOOKS

RNG_STATE_KEY = 'rng_states'


def get_rng_state() -> dict:
    """The state of every random generator a training step may draw from."""
    state = dict(
        python=random.getstate(),
        numpy=np.random.get_state(),
        torch=torch.get_rng_state())
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Put back a state returned by :func:`get_rng_state`."""
    random.setstate(state['python'])
    np.random.set_state(state['numpy'])
    torch.set_rng_state(state['torch'])
    if 'cuda' in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state['cuda'])


class _RestoreAfterSkipped:
    """Wraps a loop's data iterator: puts the random generators back once
    the batches the resumed loop skips have been drawn."""

    def __init__(self, iterator, skipped: int, state: dict) -> None:
        self._iterator = iterator
        self._skipped = skipped
        self._state = state

    def __iter__(self):
        return self

    def __next__(self):
        batch = next(self._iterator)
        if self._skipped:
            self._skipped -= 1
            if self._skipped == 0:
                set_rng_state(self._state)
        return batch

    def __getattr__(self, name: str):
        return getattr(self._iterator, name)


@HOOKS.register_module()
class RandomStateHook(Hook):
    """Saves the random generators with each checkpoint, restores them on
    resume, and keeps validation from drawing on the training's streams.

    mmengine seeds the generators once at start-up and does not save them,
    so a resumed run augments, samples proposals and drops paths with other
    numbers than the run it continues, and a validation pass in between
    shifts the streams of everything after it. With this hook, a run killed
    after a checkpoint and resumed from it ends with the same weights as
    one that was never stopped (in deterministic mode; tested on the CPU).

    The state of every rank is kept (gathered to rank 0 when a checkpoint is
    due). The resumed run must have the same world size; otherwise the
    states are not applied and a warning says so. An iteration-based loop
    skips the batches trained before by drawing them again (running the
    pipeline on them): the states are applied after the last of those. What
    the hook cannot restore is the state inside dataloader worker
    processes: epoch-based loops with ``persistent_workers=True`` restart
    the workers' seeded augmentation streams at the resume.
    """

    # Before CheckpointHook (VERY_LOW) so that the states of all ranks are
    # gathered when it saves.
    priority = 'LOW'

    def __init__(self) -> None:
        self._gathered: Optional[List[dict]] = None
        self._to_restore: Optional[List[dict]] = None
        self._before_val: Optional[dict] = None

    # Saving -----------------------------------------------------------------
    def _checkpoint_hooks(self, runner) -> List[CheckpointHook]:
        return [h for h in runner.hooks if isinstance(h, CheckpointHook)]

    def _gather_if_saving(self, runner, by_epoch: bool) -> None:
        # Collective: every rank takes part, whereas ``before_save_checkpoint``
        # runs on rank 0 only.
        if get_world_size() == 1:
            return
        for hook in self._checkpoint_hooks(runner):
            if hook.by_epoch != by_epoch:
                continue
            if by_epoch:
                due = hook.every_n_epochs(runner, hook.interval,
                                          hook.save_begin)
                last = hook.is_last_train_epoch(runner)
            else:
                due = hook.every_n_train_iters(runner, hook.interval,
                                               hook.save_begin)
                last = hook.is_last_train_iter(runner)
            if due or (hook.save_last and last):
                self._gathered = all_gather_object(get_rng_state())
                return

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None) -> None:
        self._gather_if_saving(runner, by_epoch=False)

    def after_train_epoch(self, runner) -> None:
        self._gather_if_saving(runner, by_epoch=True)

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        states = self._gathered if self._gathered else [get_rng_state()]
        checkpoint[RNG_STATE_KEY] = states
        self._gathered = None

    # Restoring --------------------------------------------------------------
    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        # Only a resume continues the streams; ``load_from`` (fine-tuning,
        # testing) starts new ones.
        if runner._resume and RNG_STATE_KEY in checkpoint:
            self._to_restore = checkpoint[RNG_STATE_KEY]

    def before_train(self, runner) -> None:
        # Applied here, after mmengine's resume may have re-seeded, and
        # before the first batch is drawn.
        states, self._to_restore = self._to_restore, None
        if states is None:
            return
        if len(states) != get_world_size():
            print_log(
                f'The checkpoint holds random states of {len(states)} '
                f'process(es), this run has {get_world_size()}: the '
                'resumed run draws other random numbers than the original.',
                logger='current',
                level=logging.WARNING)
            return
        state = states[get_rank()]
        loop = runner.train_loop
        if isinstance(loop, IterBasedTrainLoop) and loop.iter > 0:
            loop.dataloader_iterator = _RestoreAfterSkipped(
                loop.dataloader_iterator, loop.iter, state)
        else:
            set_rng_state(state)

    def before_val(self, runner) -> None:
        self._before_val = get_rng_state()

    def after_val(self, runner) -> None:
        if self._before_val is not None:
            set_rng_state(self._before_val)
            self._before_val = None


@HOOKS.register_module()
class CheckpointMatchHook(Hook):
    """Refuses a ``load_from`` checkpoint that belongs to another model.

    mmengine loads checkpoints non-strictly and only warns about what did not
    fit, so a checkpoint of another architecture trains or tests an
    uninitialized model behind a long warning. Fine-tuning with a new head
    (other classes) stays possible: the run stops only when fewer than
    ``min_fraction`` of the model's tensors are in the checkpoint with their
    shape.

    Args:
        min_fraction (float): Share of the model's state-dict tensors the
            checkpoint must provide with the right shape. Defaults to 0.5.
    """

    priority = 'VERY_HIGH'

    def __init__(self, min_fraction: float = 0.5) -> None:
        if not 0 <= min_fraction <= 1:
            raise ValueError(
                f'min_fraction must be in [0, 1], got {min_fraction}')
        self.min_fraction = min_fraction

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        check_checkpoint_fits(
            unwrap_model(runner.model), checkpoint, runner._load_from
            or 'the checkpoint', self.min_fraction)


def unwrap_model(model: torch.nn.Module) -> torch.nn.Module:
    """The model inside wrappers (DDP) and test-time-augmentation models,
    which hold it as ``module``, as mmengine's checkpoint loader unwraps
    them."""
    while is_model_wrapper(model) or isinstance(model, BaseTTAModel):
        model = model.module
    return model


def check_checkpoint_fits(model: torch.nn.Module,
                          checkpoint: dict,
                          source: str,
                          min_fraction: float = 0.5) -> None:
    """Refuse a checkpoint of another model.

    Args:
        model (nn.Module): The model the checkpoint is loaded into.
        checkpoint (dict): The loaded checkpoint (with ``state_dict``) or a
            bare state dict.
        source (str): How to name the checkpoint in the error.
        min_fraction (float): Share of the model's state-dict tensors the
            checkpoint must provide with the right shape. Defaults to 0.5.

    Raises:
        ValueError: Naming the checkpoint, how much of the model it holds
            and examples of what is missing or of another shape.
    """
    expected = model.state_dict()
    provided: Dict[str, torch.Tensor] = checkpoint.get(
        'state_dict', checkpoint)
    provided = {
        k[len('module.'):] if k.startswith('module.') else k: v
        for k, v in provided.items()
    }
    fitting = [
        k for k, v in expected.items()
        if k in provided and getattr(provided[k], 'shape', None) == v.shape
    ]
    if len(fitting) >= min_fraction * len(expected):
        return
    missing = [k for k in expected if k not in provided]
    wrong = [
        f'{k}: checkpoint {tuple(provided[k].shape)}, model '
        f'{tuple(expected[k].shape)}' for k in expected
        if k in provided and k not in fitting
    ]
    raise ValueError(
        f'{source} does not fit this model ({type(model).__name__}): '
        f'{len(fitting)} of its {len(expected)} state-dict tensors are '
        f'there with their shape; missing e.g. {missing[:3]}, shape '
        f'mismatches e.g. {wrong[:3]}. Is it a checkpoint of another '
        'config? (Backbone weights go to the backbone\'s '
        "init_cfg=dict(type='Pretrained', checkpoint=..., prefix=...).)")
