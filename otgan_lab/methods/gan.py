"""Vanilla GAN (Goodfellow et al. 2014), non-saturating or minimax, with optional R1 (Mescheder et al. 2018).

One critic (discriminator) step on a real and a detached fake batch with the logistic loss, then one
generator step on fresh noise. R1 adds (gamma/2) E||grad_x l(x)||^2 on real data to the critic loss.
"""

from __future__ import annotations

import torch

from otgan_lab.losses.adversarial import gan_critic_loss, gan_generator_loss
from otgan_lab.methods.base import Capabilities, Method, with_penalties


class GAN(Method):
    declared_capabilities = Capabilities(logit_critic=True)

    def __init__(self, *, generator_loss: str = "non_saturating", r1_gamma: float = 0.0,
                 reuse_fake: bool = False, **kw):
        super().__init__(**kw)
        gan_generator_loss(torch.zeros(1), generator_loss)  # validate the form early
        self.generator_loss, self.r1_gamma = generator_loss, float(r1_gamma)
        self.reuse_fake = bool(reuse_fake)

    def train_step(self, real, ctx):
        n = self.batch_size
        x = real(n)
        generated = self.sample(n) if self.reuse_fake else None  # with its graph, for the generator step
        fake = generated.detach() if generated is not None else self.fake_batch(n)
        if self.r1_gamma > 0:  # separate passes: R1's input gradient then runs over the real rows only
            logits_real, r1 = self.critic_with_r1(x, self.r1_gamma, ctx)
            logits_fake = self.critic(fake)
        else:
            (logits_real, logits_fake), r1 = self.critic_real_fake(x, fake), None
        critic_loss = gan_critic_loss(logits_real, logits_fake)
        logs = {"critic_loss": critic_loss.detach()}
        ctx.optimize("critic", with_penalties(critic_loss, logs, r1=r1))

        generated = generated if generated is not None else self.sample(n)
        generator_loss = gan_generator_loss(self.critic(generated), self.generator_loss)
        ctx.optimize("generator", generator_loss)
        logs["generator_loss"] = generator_loss.detach()
        return logs
