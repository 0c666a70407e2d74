"""Vanilla GAN (Goodfellow et al. 2014), non-saturating or minimax, with optional R1 (Mescheder et al. 2018).

One critic (discriminator) step on a real and a detached fake batch with the logistic loss, then one
generator step on fresh noise. R1 adds (gamma/2) E||grad_x l(x)||^2 on real data to the critic loss.
"""

from __future__ import annotations

import torch

from otgan_lab.losses.adversarial import gan_critic_loss, gan_generator_loss
from otgan_lab.losses.penalties import r1_penalty
from otgan_lab.methods.base import Method


class GAN(Method):
    critic_is_logit = True

    def __init__(self, *, generator_loss: str = "non_saturating", r1_gamma: float = 0.0, **kw):
        super().__init__(**kw)
        gan_generator_loss(torch.zeros(1), generator_loss)  # validate the form early
        self.generator_loss, self.r1_gamma = generator_loss, float(r1_gamma)

    def train_step(self, real, ctx):
        n = self.batch_size
        x = real(n)
        if self.r1_gamma > 0:  # separate passes: R1's input gradient then runs over the real rows only
            x.requires_grad_(True)
            logits_real, logits_fake = self.critic(x), self.critic(self.fake_batch(n))
        else:
            logits_real, logits_fake = self.critic_real_fake(x, self.fake_batch(n))
        critic_loss = gan_critic_loss(logits_real, logits_fake)
        logs = {"critic_loss": critic_loss.detach()}
        if self.r1_gamma > 0:
            r1 = r1_penalty(ctx.input_grad(logits_real, x, "critic"), self.r1_gamma)
            critic_loss = critic_loss + r1
            logs["r1"] = r1.detach()
        ctx.optimize("critic", critic_loss)

        generator_loss = gan_generator_loss(self.critic(self.sample(n)), self.generator_loss)
        ctx.optimize("generator", generator_loss)
        logs["generator_loss"] = generator_loss.detach()
        return logs
