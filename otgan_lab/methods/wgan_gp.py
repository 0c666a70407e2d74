"""WGAN-GP (Gulrajani et al. 2017).

Critic loss E f(G(z)) - E f(x) + lambda E (||grad f(x_hat)|| - 1)^2 at per-sample random interpolates
x_hat, n_critic critic steps per generator step, Adam (1e-4, betas (0.5, 0.9)), lambda 10. No BatchNorm in
the critic: the penalty is per sample. reuse_fake: the generator step reuses the last critic step's batch
(one generator forward fewer per iteration).
"""

from __future__ import annotations

import torch

from otgan_lab.losses.adversarial import wasserstein_critic_loss, wasserstein_generator_loss
from otgan_lab.losses.penalties import gradient_penalty, interpolate
from otgan_lab.methods.base import Capabilities, Method


class WGANGP(Method):
    declared_capabilities = Capabilities(critic_batchnorm_ok=False)  # the penalty is per sample
    integer_options = {"n_critic": 1}

    @classmethod
    def real_batches_per_step(cls, options) -> int:
        return int(options.get("n_critic", 5))  # one real batch per critic step

    def __init__(self, *, n_critic: int = 5, gp_weight: float = 10.0, reuse_fake: bool = False, **kw):
        super().__init__(**kw)
        self.n_critic, self.gp_weight = int(n_critic), float(gp_weight)
        self.reuse_fake = bool(reuse_fake)  # the last critic step's batch (and its graph) for the generator

    def train_step(self, real, ctx):
        n = self.batch_size
        generated = None
        for k in range(self.n_critic):
            x = real(n)
            if self.reuse_fake and k == self.n_critic - 1:
                generated = self.sample(n)
                fake = generated.detach().to(torch.float32)
            else:
                fake = self.fake_batch(n).to(torch.float32)
            x_hat = interpolate(x, fake).requires_grad_(True)
            # One critic pass over [real; fake] (critic_real_fake: no BatchNorm here) and one over the
            # interpolates alone. Folding x_hat into the first pass would make the input gradient and its
            # double backward run over all 3n rows (zeros upstream for 2n of them): 3x the penalty's cost.
            wasserstein = wasserstein_critic_loss(*self.critic_real_fake(x, fake))
            gp = gradient_penalty(ctx.input_grad(self.critic(x_hat), x_hat, "critic"))
            ctx.optimize("critic", wasserstein + self.gp_weight * gp)
        generated = generated if generated is not None else self.sample(n)
        generator_loss = wasserstein_generator_loss(self.critic(generated))
        ctx.optimize("generator", generator_loss)
        return {"critic_loss": wasserstein.detach(), "gradient_penalty": gp.detach(),
                "generator_loss": generator_loss.detach(), "wasserstein_estimate": -wasserstein.detach()}
