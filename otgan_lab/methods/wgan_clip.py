"""WGAN with weight clipping (Arjovsky, Chintala, Bottou 2017).

The critic minimises E f(G(z)) - E f(x) for n_critic steps per generator step, every critic parameter
clamped to [-c, c] right after each critic step; the generator minimises -E f(G(z)). RMSProp 5e-5, c 0.01,
n_critic 5. Optional warm-up schedule of the official code: 100 critic steps for the first 25 generator
iterations and every 500th.
"""

from __future__ import annotations

import torch

from otgan_lab.losses.adversarial import wasserstein_critic_loss, wasserstein_generator_loss
from otgan_lab.methods.base import Method


def critic_steps(gen_iteration: int, n_critic: int, warmup: bool) -> int:
    """Critic updates before generator iteration `gen_iteration` (official WGAN schedule when warmup)."""
    if warmup and (gen_iteration < 25 or gen_iteration % 500 == 0):
        return 100
    return n_critic


class WGANClip(Method):
    integer_options = {"n_critic": 1}

    @classmethod
    def real_batches_per_step(cls, options) -> int:
        return int(options.get("n_critic", 5))  # one real batch per critic step

    def __init__(self, *, n_critic: int = 5, clip: float = 0.01, warmup_schedule: bool = False, **kw):
        super().__init__(**kw)
        if clip <= 0:
            raise ValueError(f"clip must be > 0, got {clip}")
        self.n_critic, self.clip, self.warmup_schedule = int(n_critic), float(clip), bool(warmup_schedule)

    @torch.no_grad()
    def _clamp_critic(self) -> None:
        params = list(self.critic_parameters())
        torch._foreach_clamp_min_(params, -self.clip)
        torch._foreach_clamp_max_(params, self.clip)

    def train_step(self, real, ctx):
        n = self.batch_size
        for _ in range(critic_steps(ctx.step, self.n_critic, self.warmup_schedule)):
            critic_loss = wasserstein_critic_loss(*self.critic_real_fake(real(n), self.fake_batch(n)))
            ctx.optimize("critic", critic_loss)
            self._clamp_critic()
        generator_loss = wasserstein_generator_loss(self.critic(self.sample(n)))
        ctx.optimize("generator", generator_loss)
        return {"critic_loss": critic_loss.detach(), "generator_loss": generator_loss.detach(),
                "wasserstein_estimate": -critic_loss.detach()}
