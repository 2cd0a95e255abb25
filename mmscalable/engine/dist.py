# Copyright (c) mmscalable contributors. All rights reserved.
"""Data-parallel training of CPU processes (gloo), SyncBN included.

mmengine's DDP wrapper assumes one GPU per process, and torch's
``SyncBatchNorm`` refuses CPU tensors. ``tools/train.py`` and
``tools/test.py`` select :class:`CPUDistributedDataParallel` for distributed
runs without a GPU (see ``mmscalable.compat.prepare_launcher``); it
gives DDP no device ids and synchronizes the batch statistics of the model's
SyncBN layers over the process group, as on GPUs. CPU runs are for testing
and debugging the distributed path; the numbers are the GPU run's.
"""
import torch
import torch.distributed as dist
import torch.nn as nn
from mmengine.logging import print_log
from mmengine.model import MMDistributedDataParallel
from torch.nn.modules.batchnorm import _BatchNorm

from mmscalable.registry import MODEL_WRAPPERS


class _AllReduceSum(torch.autograd.Function):
    """Sum over the process group, differentiable: the gradient of a sum
    over the ranks is the sum of the ranks' gradients.

    Plain blocking ``dist.all_reduce``: torch's differentiable one
    (``torch.distributed.nn.functional``, deprecated) goes through the
    functional collectives, and gloo runs using it aborted now and then at
    exit.
    """

    @staticmethod
    def forward(ctx, tensor: torch.Tensor, group) -> torch.Tensor:
        ctx.group = group
        total = tensor.clone()
        dist.all_reduce(total, group=group)
        return total

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        total = grad.clone()
        dist.all_reduce(total, group=ctx.group)
        return total, None


class CPUSyncBatchNorm(_BatchNorm):
    """``nn.SyncBatchNorm`` that also synchronizes CPU tensors.

    Same parameters, buffers and state-dict keys as ``nn.SyncBatchNorm``
    (instances are converted in place). In training mode with more than one
    process, the per-channel sum and sum of squares and the element count
    are summed over the process group with a differentiable all-reduce, so
    gradients flow through the shared statistics as in torch's CUDA kernel.
    GPU tensors go to ``nn.SyncBatchNorm``'s forward. Not a subclass of it:
    DDP refuses any ``nn.SyncBatchNorm`` in a CPU module.
    """

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(
                f'expected at least 2D input (got {input.dim()}D input)')

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(input)
        if input.device.type != 'cpu':
            return nn.SyncBatchNorm.forward(self, input)
        group = self.process_group or dist.group.WORLD
        if (not self.training or not dist.is_initialized()
                or dist.get_world_size(group) == 1):
            # _BatchNorm's forward (nn.SyncBatchNorm's refuses CPU tensors
            # once a process group exists, even where it need not sync).
            return super().forward(input)
        channels = input.size(1)
        reduce_dims = [0, *range(2, input.dim())]
        x = input.float()
        stats = torch.cat([
            x.sum(reduce_dims), (x * x).sum(reduce_dims),
            x.new_full((1, ), input.numel() // channels)
        ])
        stats = _AllReduceSum.apply(stats, group)
        count = stats[-1]
        mean = stats[:channels] / count
        var = (stats[channels:2 * channels] / count - mean * mean).clamp_min(0)
        if self.track_running_stats:
            self._update_running_stats(mean.detach(), var.detach(), count)
        shape = [1, channels] + [1] * (input.dim() - 2)
        out = (x - mean.view(shape)) * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        return out.to(input.dtype)

    @torch.no_grad()
    def _update_running_stats(self, mean, var, count) -> None:
        self.num_batches_tracked.add_(1)
        if self.momentum is None:  # cumulative moving average
            momentum = 1.0 / self.num_batches_tracked.item()
        else:
            momentum = self.momentum
        unbiased = var * count / (count - 1).clamp_min(1)
        self.running_mean.lerp_(mean.to(self.running_mean.dtype), momentum)
        self.running_var.lerp_(unbiased.to(self.running_var.dtype), momentum)


def convert_cpu_sync_batchnorm(module: nn.Module) -> int:
    """Turn the ``nn.SyncBatchNorm`` layers of ``module`` (subclasses too)
    into :class:`CPUSyncBatchNorm` in place; returns how many there were."""
    converted = 0
    for layer in module.modules():
        # Also subclasses (mmengine registers its own as `SyncBN`).
        if isinstance(layer, nn.SyncBatchNorm):
            layer.__class__ = CPUSyncBatchNorm
            converted += 1
    return converted


@MODEL_WRAPPERS.register_module()
class CPUDistributedDataParallel(MMDistributedDataParallel):
    """mmengine's DDP wrapper for a model on the CPU (gloo).

    DDP takes no ``device_ids`` for a CPU module, whatever mmengine's runner
    passes, and the model's SyncBN layers become :class:`CPUSyncBatchNorm`.

    Args:
        module (nn.Module): The model, on the CPU.
        **kwargs: Arguments of ``MMDistributedDataParallel``.
    """

    def __init__(self, module: nn.Module, **kwargs) -> None:
        kwargs['device_ids'] = None
        kwargs.pop('output_device', None)
        converted = convert_cpu_sync_batchnorm(module)
        if converted:
            print_log(
                f'{converted} SyncBN layers synchronize over '
                f'{dist.get_backend()} (CPUSyncBatchNorm)',
                logger='current')
        super().__init__(module=module, **kwargs)
