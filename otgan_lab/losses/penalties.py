"""Gradient penalties on input gradients (METHODS.md §4, §12).

The input gradient itself is computed by the caller (the trainer's context does it so that fp16 loss
scaling follows PyTorch's AMP gradient-penalty recipe); these functions only turn gradients into penalties.
WGAN-GP (Gulrajani et al. 2017): E (||g|| - 1)^2 at random interpolates, one epsilon per sample.
R1 (Mescheder et al. 2018): (gamma / 2) E ||g||^2 on real data; the project's gamma has the 1/2 in front.
"""

from __future__ import annotations

import torch


def interpolate(real: torch.Tensor, fake: torch.Tensor,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """x_hat = eps * real + (1 - eps) * fake with eps ~ U[0, 1] per sample, broadcast over features."""
    # Under autocast the generator's output may be bf16/fp16 while data is fp32: interpolate in fp32.
    real, fake = real.float(), fake.float()
    eps = torch.rand((real.shape[0],) + (1,) * (real.dim() - 1), device=real.device, generator=generator)
    return torch.lerp(fake, real, eps)


def per_sample_grad_norm(grad: torch.Tensor) -> torch.Tensor:
    """L2 norm over all non-batch dimensions, with a tiny floor so a zero gradient has a finite derivative."""
    return (grad.flatten(1).float().pow(2).sum(1) + 1e-12).sqrt()


def gradient_penalty(grad: torch.Tensor) -> torch.Tensor:
    """WGAN-GP: mean over the batch of (||g|| - 1)^2."""
    return (per_sample_grad_norm(grad) - 1.0).pow(2).mean()


def r1_penalty(grad: torch.Tensor, gamma: float) -> torch.Tensor:
    """R1 (or R2 on fakes): (gamma / 2) * mean ||g||^2."""
    return 0.5 * gamma * grad.flatten(1).float().pow(2).sum(1).mean()
