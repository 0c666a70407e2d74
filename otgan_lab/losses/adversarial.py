"""Adversarial loss pairs on raw critic scores (METHODS.md §1-3).

GAN (Goodfellow et al. 2014) on logits l: critic softplus(-l(x)) + softplus(l(G(z))); generator
non-saturating softplus(-l(G(z))) or minimax -softplus(l(G(z))). WGAN (Arjovsky et al. 2017): the critic
minimises E f(G(z)) - E f(x), so it scores real data higher; the generator minimises -E f(G(z)).
LSGAN (Mao et al. 2017): the critic regresses scores to b on real and a on generated data, the generator to c.
All losses are batch means, computed in float32 when the scores are half precision: under bf16 autocast a
logit's sigmoid near saturation (the gradient of softplus) rounds 1 - sigmoid(l) to 0 or doubles it, and a
difference of two bf16 means keeps ~2 significant digits.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from otgan_lab.amp import upcast


def gan_critic_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    return F.softplus(-upcast(logits_real)).mean() + F.softplus(upcast(logits_fake)).mean()


def gan_generator_loss(logits_fake: torch.Tensor, form: str = "non_saturating") -> torch.Tensor:
    logits_fake = upcast(logits_fake)
    if form == "non_saturating":
        return F.softplus(-logits_fake).mean()
    if form == "minimax":
        return -F.softplus(logits_fake).mean()
    raise ValueError(f"generator loss form must be 'non_saturating' or 'minimax', got {form!r}")


def wasserstein_critic_loss(score_real: torch.Tensor, score_fake: torch.Tensor) -> torch.Tensor:
    return upcast(score_fake).mean() - upcast(score_real).mean()


def wasserstein_generator_loss(score_fake: torch.Tensor) -> torch.Tensor:
    return -upcast(score_fake).mean()


def least_squares_critic_loss(score_real: torch.Tensor, score_fake: torch.Tensor, a: float = 0.0,
                              b: float = 1.0) -> torch.Tensor:
    """½ E (D(x) − b)² + ½ E (D(G(z)) − a)²."""
    return 0.5 * (upcast(score_real) - b).pow(2).mean() + 0.5 * (upcast(score_fake) - a).pow(2).mean()


def least_squares_generator_loss(score_fake: torch.Tensor, c: float = 1.0) -> torch.Tensor:
    """½ E (D(G(z)) − c)²."""
    return 0.5 * (upcast(score_fake) - c).pow(2).mean()
