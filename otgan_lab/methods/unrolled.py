"""Unrolled GAN (Metz, Poole, Pfau, Sohl-Dickstein, "Unrolled Generative Adversarial Networks", ICLR 2017).

The generator descends f_K(θ_G) = f(θ_G, θ_D^K(θ_G)), f = E log D(x) + E log(1 - D(G(z))), θ_D^K the critic
after K differentiable steps of its own optimizer (from its real state) on the same batch: the path through
dθ_D^K/dθ_G discourages mode hopping. The critic then takes its ordinary step from θ_D^0 on that batch (the
authors' notebook). `variant: lookahead` is the first-order ablation (fakes detached, no graph through the
steps); `generator_loss: non_saturating` uses -E log D_K(G(z)) and keeps the real term E log D_K(x), which
depends on θ_G for K >= 1. Memory is O(K). No BatchNorm in the critic: every inner step would update it.
"""

from __future__ import annotations

from functools import partial

import torch
import torch.nn.functional as F
from torch.func import functional_call

from otgan_lab.amp import upcast
from otgan_lab.losses.adversarial import gan_critic_loss, gan_generator_loss
from otgan_lab.losses.unrolled import (
    adam_state_from_optimizer,
    differentiable_adam_step,
    differentiable_sgd_step,
    sgd_state_from_optimizer,
)
from otgan_lab.methods.base import Capabilities, Method, has_batchnorm

VARIANTS = ("exact", "lookahead")


class UnrolledGAN(Method):
    declared_capabilities = Capabilities(logit_critic=True, critic_batchnorm_ok=False)
    integer_options = {"unroll_steps": 0}

    def __init__(self, *, unroll_steps: int = 5, variant: str = "exact", generator_loss: str = "minimax",
                 **kw):
        super().__init__(**kw)
        if variant not in VARIANTS:
            raise ValueError(f"unrolled GAN variant must be one of {VARIANTS}, got {variant!r}")
        if int(unroll_steps) < 0:
            raise ValueError(f"unroll_steps must be >= 0, got {unroll_steps}")
        gan_generator_loss(torch.zeros(1), generator_loss)  # validate the form early
        if has_batchnorm(self.critic_module):
            raise ValueError("unrolled GAN cannot unroll a critic with BatchNorm; "
                             "set model.nets.critic.batchnorm=false")
        self.unroll_steps, self.variant, self.generator_loss = int(unroll_steps), variant, generator_loss

    def _logits(self, params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        return upcast(functional_call(self.critic_module, params, (x,)))  # float32 logits, as Method.critic

    def _inner_step(self, optimizer: torch.optim.Optimizer, params: dict[str, torch.Tensor]):
        """(differentiable step function, its initial state) mirroring the critic's real optimizer: its lr,
        betas, eps and weight decay, without the trainer's grad clipping."""
        if len(optimizer.param_groups) != 1:
            raise ValueError("unrolled GAN mirrors a critic optimizer with a single parameter group")
        group = optimizer.param_groups[0]
        if isinstance(optimizer, torch.optim.Adam):
            state = adam_state_from_optimizer(optimizer, params)
            return partial(differentiable_adam_step, lr=group["lr"], betas=group["betas"], eps=group["eps"],
                           weight_decay=group["weight_decay"]), state
        if isinstance(optimizer, torch.optim.SGD) and not (
            group["weight_decay"] or group["dampening"] or group["nesterov"]
        ):
            state = sgd_state_from_optimizer(optimizer, params)
            return partial(differentiable_sgd_step, lr=group["lr"], momentum=group["momentum"]), state
        raise ValueError(f"unrolled GAN can unroll Adam or plain/momentum SGD critics, not {optimizer!r}")

    def unrolled_critic(self, x: torch.Tensor, fake: torch.Tensor, optimizer: torch.optim.Optimizer,
                        steps: int, create_graph: bool) -> dict[str, torch.Tensor]:
        """θ_D^steps: ``steps`` functional optimizer steps on the critic loss at (x, fake) from the critic's
        current weights and optimizer state. With create_graph the result is a function of θ_D^0 and fake."""
        params = dict(self.critic_module.named_parameters())
        step, state = self._inner_step(optimizer, params)
        for _ in range(steps):
            if not create_graph:  # first order: each step starts from fresh leaves, nothing is kept
                params = {name: p.detach().requires_grad_(True) for name, p in params.items()}
            loss = gan_critic_loss(self._logits(params, x), self._logits(params, fake))
            grads = torch.autograd.grad(loss, list(params.values()), create_graph=create_graph)
            params, state = step(params, dict(zip(params, grads)), state)
        return params if create_graph else {name: p.detach() for name, p in params.items()}

    def unrolled_generator_loss(self, x: torch.Tensor, fake: torch.Tensor,
                                critic_optimizer: torch.optim.Optimizer) -> torch.Tensor:
        """The generator's loss against the critic unrolled K steps: f_K (minimax) or its NS form."""
        exact = self.variant == "exact"
        params = self.unrolled_critic(x, fake if exact else fake.detach(), critic_optimizer,
                                      self.unroll_steps, create_graph=exact)
        real_term = -F.softplus(-self._logits(params, x)).mean()  # E log D_K(x)
        return real_term + gan_generator_loss(self._logits(params, fake), self.generator_loss)

    def train_step(self, real, ctx):
        n = self.batch_size
        x, fake = real(n), self.sample(n)
        generator_loss = self.unrolled_generator_loss(x, fake, ctx.optimizers["critic"])
        ctx.optimize("generator", generator_loss)  # d f_K/dθ_G; the critic is still at θ_D^0
        critic_loss = gan_critic_loss(self.critic(x), self.critic(fake.detach()))  # the same batch
        ctx.optimize("critic", critic_loss)
        return {"critic_loss": critic_loss.detach(), "generator_loss": generator_loss.detach()}
