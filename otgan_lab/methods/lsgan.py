"""LSGAN (Mao, Li, Xie, Lau, Wang, Smolley, "Least Squares Generative Adversarial Networks", ICCV 2017).

The critic regresses its scores to b on real and to a on generated data, ½E(D(x) − b)² + ½E(D(G(z)) − a)²,
and the generator pulls its samples' scores to c, ½E(D(G(z)) − c)²: one critic step, then one generator
step. Defaults are the 0-1 coding a = 0, b = c = 1; the paper's Pearson χ² form is a = −1, b = 1, c = 0.
"""

from __future__ import annotations

from otgan_lab.losses.adversarial import least_squares_critic_loss, least_squares_generator_loss
from otgan_lab.methods.base import Method


class LSGAN(Method):
    def __init__(self, *, a: float = 0.0, b: float = 1.0, c: float = 1.0, **kw):
        super().__init__(**kw)
        self.a, self.b, self.c = float(a), float(b), float(c)

    def train_step(self, real, ctx):
        n = self.batch_size
        scores = self.critic_real_fake(real(n), self.fake_batch(n))
        critic_loss = least_squares_critic_loss(*scores, a=self.a, b=self.b)
        ctx.optimize("critic", critic_loss)
        generator_loss = least_squares_generator_loss(self.critic(self.sample(n)), c=self.c)
        ctx.optimize("generator", generator_loss)
        return {"critic_loss": critic_loss.detach(), "generator_loss": generator_loss.detach()}
