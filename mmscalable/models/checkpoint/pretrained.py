# Copyright (c) mmscalable contributors. All rights reserved.
"""Loading pretrained weights into a backbone with clear errors."""
import logging
from typing import Callable, Dict, Mapping, Optional, Sequence

import torch.nn as nn
from mmengine.logging import print_log
from mmengine.runner.checkpoint import CheckpointLoader
from torch import Tensor

# Keys under which checkpoints keep their weights: the trained weights and
# an exponential moving average of them (timm's and DeiT's savers).
RAW_CONTAINERS = ('state_dict', 'model')
EMA_CONTAINERS = ('state_dict_ema', 'model_ema')


def weights_container(checkpoint: Mapping, source: str,
                      ema: Optional[bool] = True) -> Optional[str]:
    """The key of ``checkpoint`` whose weights to take, or None for a flat
    dict of tensors.

    Args:
        checkpoint (Mapping): A loaded checkpoint.
        source (str): Its path, for messages.
        ema (bool, optional): True: the EMA weights where the checkpoint
            has them, else the trained ones (the figures of the papers
            that keep an EMA are the EMA model's); False: the trained
            weights only; None: the trained weights where the checkpoint
            has them, else the EMA ones. Defaults to True.

    Raises:
        ValueError: If ``checkpoint`` is not a dict, holds only EMA weights
            while ``ema=False``, or has no weights at all.
    """
    if not isinstance(checkpoint, Mapping):
        raise ValueError(f'{source} holds a {type(checkpoint).__name__}, '
                         'not a dict of weights')

    def first(keys):
        return next(
            (k for k in keys if isinstance(checkpoint.get(k), Mapping)), None)

    raw, averaged = first(RAW_CONTAINERS), first(EMA_CONTAINERS)
    if ema is False and raw is None and averaged is not None:
        raise ValueError(
            f'{source} holds only EMA weights (`{averaged}`); take them '
            'without asking for the trained weights only (no --no-ema, or '
            'ema=True)')
    key = (averaged or raw) if ema else (raw or averaged)
    if key is None and not all(
            isinstance(v, Tensor) for v in checkpoint.values()):
        raise ValueError(
            f'{source} has no weights under any of '
            f'{RAW_CONTAINERS + EMA_CONTAINERS} and is not a flat dict of '
            f'tensors (keys: {list(checkpoint)[:8]})')
    return key


def unwrap_state_dict(checkpoint: Mapping,
                      source: str,
                      ema: Optional[bool] = True) -> Dict[str, Tensor]:
    """The weights of a checkpoint, whatever its container: those under
    :func:`weights_container`'s key, or the checkpoint itself when it is a
    flat dict of tensors."""
    key = weights_container(checkpoint, source, ema)
    return dict(checkpoint if key is None else checkpoint[key])


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
        ema: bool = True,
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
        ema (bool): Load the EMA weights where the checkpoint has them
            (``state_dict_ema``, ``model_ema``), as the official figures
            were measured; False loads the trained weights.
            Defaults to True.
        logger: Where to report what was loaded.

    Raises:
        ValueError: If the checkpoint has no weights for the module, lacks
            required keys, or has tensors of other shapes; the message names
            the keys.
    """
    loaded = CheckpointLoader.load_checkpoint(checkpoint, map_location='cpu')
    container = weights_container(loaded, checkpoint, ema)
    state_dict = _strip_module(
        dict(loaded if container is None else loaded[container]))
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
        (f' (`{container}`)' if container in EMA_CONTAINERS else '') +
        (f'; kept the initialization of {missing}' if missing else '') +
        (f'; ignored {unexpected}' if unexpected else ''),
        logger=logger,
        level=logging.WARNING if unexpected else logging.INFO)
