"""Wasserstein auto-encoders (Tolstikhin, Bousquet, Gelly, Schoelkopf, ICLR 2018).

A deterministic encoder Q and decoder G minimise E c(x, G(Q(x))) + lambda * D(Q_Z, P_Z): reconstruction
plus a divergence between the aggregate code distribution and the prior P_Z = N(0, I). WAE-MMD measures it
with the MMD under the inverse multiquadratic kernel k(z, z') = C / (C + ||z - z'||^2), summed over
C = s * 2 d sigma^2 for s in {.1, .2, .5, 1, 2, 5, 10}; WAE-GAN with a latent discriminator on codes
(prior = real, codes = fake), the encoder taking the non-saturating loss. Samples: G(z), z ~ P_Z.

Settings as recalled from the paper and its official code (not re-read here, METHODS.md has no WAE
section): c(x, y) = 0.05 ||x - y||^2 summed over pixels; MNIST lambda = 10 (MMD) or 1 (GAN), Adam lr 1e-3
for the autoencoder and 5e-4 for the latent discriminator, code size 8. The MMD uses the U-statistic for
the within-sample terms, as the official code does (it can be slightly negative).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from otgan_lab.losses.adversarial import gan_critic_loss, gan_generator_loss
from otgan_lab.losses.mmd import IMQ_SCALES, imq_mmd
from otgan_lab.methods.base import AutoEncoderMethod


class WAE(AutoEncoderMethod):
    """Shared: reconstruction cost rec_scale * ||x - G(Q(x))||^2 (summed over features, batch mean)."""

    def __init__(self, *, penalty_weight: float = 10.0, rec_scale: float = 0.05, **kw):
        super().__init__(**kw)
        if self.prior_kind != "normal":
            raise ValueError("WAE uses the Gaussian prior: set method.prior.kind=normal")
        self.penalty_weight, self.rec_scale = float(penalty_weight), float(rec_scale)

    def reconstruction_cost(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(cost, codes) for a real batch x."""
        z = self.encode(x)
        error = (self.nets["decoder"](z).float() - x.float()).flatten(1)
        return self.rec_scale * error.pow(2).sum(1).mean(), z


class WAEMMD(WAE):
    def __init__(self, *, kernel_scales: Sequence[float] = IMQ_SCALES, **kw):
        super().__init__(**kw)
        self.kernel_scales = tuple(float(s) for s in kernel_scales)

    def train_step(self, real, ctx):
        cost, z = self.reconstruction_cost(real(self.batch_size))
        mmd = imq_mmd(z, self.prior(self.batch_size), scales=self.kernel_scales)
        ctx.optimize("autoencoder", cost + self.penalty_weight * mmd)
        return {"reconstruction": cost.detach(), "mmd": mmd.detach()}


class WAEGAN(WAE):
    required_nets = ("encoder", "decoder", "latent_critic")
    optimizer_nets = {"autoencoder": ("encoder", "decoder"), "latent_critic": ("latent_critic",)}

    def __init__(self, *, penalty_weight: float = 1.0, **kw):
        super().__init__(penalty_weight=penalty_weight, **kw)

    def train_step(self, real, ctx):
        n = self.batch_size
        x, latent_critic = real(n), self.nets["latent_critic"]
        with torch.no_grad():
            codes = self.encode(x)
        critic_loss = gan_critic_loss(latent_critic(self.prior(n)), latent_critic(codes))
        ctx.optimize("latent_critic", critic_loss)
        cost, z = self.reconstruction_cost(x)
        penalty = gan_generator_loss(latent_critic(z))  # -log D(Q(x)): codes should look like prior draws
        ctx.optimize("autoencoder", cost + self.penalty_weight * penalty)
        return {"reconstruction": cost.detach(), "latent_critic_loss": critic_loss.detach(),
                "latent_penalty": penalty.detach()}
