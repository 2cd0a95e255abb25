"""Random weights for the tests: every parameter and BatchNorm statistic
perturbed, so that a swapped or ignored tensor shows in the outputs."""
import torch
from torch.nn.modules.batchnorm import _BatchNorm


def randomise_(module: torch.nn.Module,
               seed: int = 0,
               scale: float = 0.05,
               mean_std: float = 0.1) -> torch.nn.Module:
    """Perturb ``module`` in place and return it: each parameter by
    ``N(0, scale)`` noise, each BatchNorm's running means drawn from
    ``N(0, mean_std)`` and its running variances from ``U(0.5, 1.5)``."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(
                torch.randn(p.shape, generator=generator, dtype=p.dtype) *
                scale)
        for m in module.modules():
            if isinstance(m, _BatchNorm) and m.running_mean is not None:
                m.running_mean.normal_(0, mean_std, generator=generator)
                m.running_var.uniform_(0.5, 1.5, generator=generator)
    return module
