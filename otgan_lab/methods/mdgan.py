"""MD-GAN: Mixture Density GAN (Eghbal-zadeh, Zellinger, Widmer, CVPR 2019), after the official code.

The critic net embeds x into R^d (d = critic_out_dim, 9 in the reference; squashed to [−2.5, 2.5] by
5σ − 2.5 as there) and scores it by the likelihood L(e) of a fixed mixture of d + 1 isotropic Gaussians on
a regular simplex. With λ = max_e L(e), D = L/λ, one critic step on −log L(e(x)) − log(λ − L(e(G(z))))
then one generator step on log(λ − L(e(G(z)))) (reference, "minimax") or −log L(e(G(z))) (non-saturating).

Deviation from the reference, on purpose (METHODS.md §7): with the reference simplex (vertex norm 0.944,
σ² = 0.25, d = 9) L is unimodal with its maximum at the centroid, so the default scales the simplex to
norm 2.0, where every vertex is its own mode; `reference_simplex: true` restores the reference geometry.
λ is found numerically once (multi-start, float64) and kept as a buffer, never assumed to be at a vertex.
`critic(x)` is the logit log(L/(λ − L)) (sigmoid = L/λ), so DRS/MH can use it: the critic network is
wrapped in `MixtureDensityCritic`, which is what the "critic" optimizer trains and `critic_module` returns.
"""

from __future__ import annotations

import torch
from torch import nn

from otgan_lab.losses.mdgan import (
    mdgan_discriminator_loss,
    mdgan_generator_loss,
    mdgan_logit,
    sgmm_log_likelihood,
    sgmm_log_max,
    simplex_vertices,
)
from otgan_lab.methods.base import Capabilities, Method

GENERATOR_LOSSES = ("minimax", "non_saturating")


class MixtureDensityCritic(nn.Module):
    """embedding net -> (optional 5σ − 2.5) -> log L under the simplex mixture; forward gives the logit."""

    def __init__(self, embedding: nn.Module, means: torch.Tensor, sigma2: float, squash: bool):
        super().__init__()
        self.embedding, self.sigma2, self.squash = embedding, float(sigma2), bool(squash)
        self.register_buffer("means", means.to(torch.get_default_dtype()))  # (d + 1, d)
        log_lambda = sgmm_log_max(means.double(), self.sigma2)  # float64 multi-start search, ~ms
        self.register_buffer("log_lambda", torch.tensor(log_lambda, dtype=torch.float64))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        e = self.embedding(x)
        if e.dim() != 2 or e.shape[1] != self.means.shape[1]:
            raise ValueError(f"MD-GAN needs a critic embedding of shape (n, {self.means.shape[1]}), got "
                             f"{tuple(e.shape)}: set method.critic_out_dim and a model that reads it")
        return 5.0 * torch.sigmoid(e) - 2.5 if self.squash else e

    def log_likelihood(self, x: torch.Tensor) -> torch.Tensor:
        """log L(e(x)), shape (n,), in fp32 or wider."""
        return sgmm_log_likelihood(self.embed(x), self.means, self.sigma2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return mdgan_logit(self.log_likelihood(x), self.log_lambda)


class MDGAN(Method):
    declared_capabilities = Capabilities(logit_critic=True)

    def __init__(
        self,
        *,
        critic_out_dim: int = 9,
        sigma2: float = 0.25,
        simplex_scale: float = 2.0,
        reference_simplex: bool = False,
        squash: bool = True,
        generator_loss: str = "minimax",
        reg: float = 1e-8,
        **kw,
    ):
        if generator_loss not in GENERATOR_LOSSES:
            raise ValueError(f"unknown generator_loss {generator_loss!r}; choose one of {GENERATOR_LOSSES}")
        # The reference simplex has norm 0.944 by construction (its normalisation bug); scale is ignored.
        means = simplex_vertices(int(critic_out_dim), 1.0 if reference_simplex else float(simplex_scale),
                                 reference=bool(reference_simplex), dtype=torch.float64)
        kw["critic"] = MixtureDensityCritic(kw["critic"], means, sigma2, squash)
        super().__init__(**kw)
        self.generator_loss, self.reg = generator_loss, float(reg)

    @property
    def log_lambda(self) -> torch.Tensor:
        return self.nets["critic"].log_lambda

    def log_likelihood(self, x: torch.Tensor) -> torch.Tensor:
        return self.nets["critic"].log_likelihood(x)

    def train_step(self, real, ctx):
        n = self.batch_size
        loglik_real = self.log_likelihood(real(n))
        loglik_fake = self.log_likelihood(self.fake_batch(n))
        critic_loss = mdgan_discriminator_loss(loglik_real, loglik_fake, self.log_lambda, self.reg)
        ctx.optimize("critic", critic_loss)

        loglik_gen = self.log_likelihood(self.sample(n))
        generator_loss = mdgan_generator_loss(loglik_gen, self.log_lambda, self.reg,
                                              non_saturating=self.generator_loss == "non_saturating")
        ctx.optimize("generator", generator_loss)
        with torch.no_grad():  # D = L/λ on the batches, as in a standard GAN
            log_lambda = self.log_lambda.to(loglik_real.dtype)
            d_real = (loglik_real.detach() - log_lambda).exp().mean()
            d_fake = (loglik_fake - log_lambda).exp().mean()
        return {"critic_loss": critic_loss.detach(), "generator_loss": generator_loss.detach(),
                "d_real": d_real, "d_fake": d_fake}
