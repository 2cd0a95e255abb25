# Copyright (c) mmscalable contributors. All rights reserved.
"""Loading pretrained weights into a backbone with clear errors."""
import logging
from typing import Callable, Dict, Mapping, Optional, Sequence

import torch.nn as nn
from mmengine.logging import print_log
from mmengine.runner.checkpoint import CheckpointLoader
from torch import Tensor

# Keys under which checkpoints keep their weights, outermost first.
_CONTAINER_KEYS = ('state_dict', 'model', 'state_dict_ema', 'model_ema')


def unwrap_state_dict(checkpoint: Mapping, source: str) -> Dict[str, Tensor]:
    """Return the weights of a checkpoint, whatever its container."""
    if not isinstance(checkpoint, Mapping):
        raise ValueError(f'{source} holds a {type(checkpoint).__name__}, '
                         'not a dict of weights')
    for key in _CONTAINER_KEYS:
        if isinstance(checkpoint.get(key), Mapping):
            return dict(checkpoint[key])
    if not all(isinstance(v, Tensor) for v in checkpoint.values()):
        raise ValueError(
            f'{source} has no weights under any of {_CONTAINER_KEYS} and is '
            f'not a flat dict of tensors (keys: {list(checkpoint)[:8]})')
    return dict(checkpoint)


def _strip_module(state_dict: Dict[str, Tensor]) -> Dict[str, Tensor]:
    # Checkpoints saved from DistributedDataParallel wrap every key.
    if state_dict and all(k.startswith('module.') for k in state_dict):
        return {k[len('module.'):]: v for k, v in state_dict.items()}
    return state_dict


def load_pretrained_backbone(
        module: nn.Module,
        checkpoint: str,
        prefix: Optional[str] = None,
        official_converter: Optional[Callable] = None,
        is_official: Optional[Callable] = None,
        optional_missing: Sequence[str] = (),
        logger=None) -> None:
    """Load a backbone's weights from a file, converting official keys.

    Args:
        module (nn.Module): The backbone.
        checkpoint (str): Path or URL of the checkpoint.
        prefix (str, optional): Keep only keys with this prefix, stripped
            (``'backbone.'`` for a classifier checkpoint).
        official_converter (Callable, optional): Maps an official checkpoint
            to classifier keys (``backbone.*``, ``head.*``). Applied when
            ``is_official`` says the checkpoint is official; the prefix is
            then ``'backbone.'``.
        is_official (Callable, optional): Tells official weights from
            mmscalable ones; required with ``official_converter``.
        optional_missing (Sequence[str]): Key prefixes the checkpoint may
            lack (e.g. output norms a classifier does not have); they keep
            their initialization.
        logger: Where to report what was loaded.

    Raises:
        ValueError: If the checkpoint has no weights for the module, lacks
            required keys, or has tensors of other shapes; the message names
            the keys.
    """
    loaded = CheckpointLoader.load_checkpoint(checkpoint, map_location='cpu')
    state_dict = _strip_module(unwrap_state_dict(loaded, checkpoint))
    own_state = module.state_dict()

    if official_converter is not None and is_official(state_dict):
        state_dict = official_converter(state_dict)
        prefix = 'backbone.'

    if prefix:
        state_dict = {
            k[len(prefix):]: v
            for k, v in state_dict.items() if k.startswith(prefix)
        }
        if not state_dict:
            raise ValueError(f'No key of {checkpoint} starts with prefix '
                             f'{prefix!r}')

    mismatched = [
        f'{k}: checkpoint {tuple(v.shape)} vs model '
        f'{tuple(own_state[k].shape)}' for k, v in state_dict.items()
        if k in own_state and v.shape != own_state[k].shape
    ]
    if mismatched:
        raise ValueError(f'{checkpoint} does not fit '
                         f'{type(module).__name__}: shape mismatch in '
                         f'{len(mismatched)} tensors: ' +
                         '; '.join(mismatched[:10]))
    missing = [k for k in own_state if k not in state_dict]
    required_missing = [
        k for k in missing if not k.startswith(tuple(optional_missing))
    ]
    if required_missing:
        raise ValueError(
            f'{checkpoint} lacks {len(required_missing)} of the '
            f'{len(own_state)} weights of {type(module).__name__} '
            f'(e.g. {required_missing[:5]}); it is not a checkpoint of this '
            'architecture' + (f' under prefix {prefix!r}' if prefix else ''))
    unexpected = [k for k in state_dict if k not in own_state]
    module.load_state_dict(state_dict, strict=False)
    print_log(
        f'Loaded {len(state_dict) - len(unexpected)} tensors into '
        f'{type(module).__name__} from {checkpoint}' +
        (f'; kept the initialization of {missing}' if missing else '') +
        (f'; ignored {unexpected}' if unexpected else ''),
        logger=logger,
        level=logging.WARNING if unexpected else logging.INFO)
