"""UOTM: generative modelling through the semi-dual of unbalanced OT (Choi, Choi, Kang, NeurIPS 2023).

The generator is a stochastic transport map T(ε, z) from a source ε ~ N(0, I) in data space (plus an
auxiliary z ~ N(0, I_nz)); the critic is the potential v. Per generator step: n_critic potential steps on
mean Ψ2*(−v(y)) + mean Ψ1*(v(T) − c(ε, T)) + R1 on real data, then one map step on mean[c(ε, T) − v(T)],
with c = cost_factor · τ · Σ(T − ε)² in both (official image code: factor 1; 2-D toy code: ½).

`prior(n)` is the flattened [ε, z], all N(0, I), so samplers see an ordinary normal prior; the model's
generator comes as a `_partial_` that this class completes with that input size, so the two cannot
disagree. T is detached in the potential step (METHODS.md; the official code relies on zeroing G's grads).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import torch

from otgan_lab.losses.uot import psi_star, transport_cost, uot_potential_loss, uot_transport_loss
from otgan_lab.methods.base import Capabilities, Method, with_penalties


class UOTM(Method):
    declared_capabilities = Capabilities(critic_batchnorm_ok=False)  # R1 is a per-sample penalty
    integer_options = {"n_critic": 1}

    @classmethod
    def real_batches_per_step(cls, options) -> int:
        return int(options.get("n_critic", 1))  # one real batch per critic step

    def __init__(
        self,
        *,
        data_shape: Sequence[int],
        tau: float = 1e-3,
        cost_factor: float = 1.0,
        psi1: str = "softplus",
        psi2: str = "softplus",
        psi_max_arg: float = 30.0,
        r1_gamma: float = 0.2,
        n_critic: int = 1,
        **kw,
    ):
        data_shape = tuple(int(s) for s in data_shape)
        if kw["prior"]["kind"] != "normal":
            raise ValueError("UOTM's source and auxiliary latent are N(0, I): set method.prior.kind=normal")
        generator = kw.get("generator")
        if isinstance(generator, functools.partial):  # complete the model's generator with the prior's size
            kw["generator"] = generator(z_dim=math.prod(data_shape) + int(kw["prior"]["dim"]))
        super().__init__(**kw)
        self.data_shape, self.source_dim = data_shape, math.prod(data_shape)
        self.psi1_name, self.psi2_name = psi1, psi2
        self.psi1, self.psi2 = psi_star(psi1, psi_max_arg), psi_star(psi2, psi_max_arg)  # unknown name: error
        self.tau, self.cost_factor = float(tau), float(cost_factor)
        self.r1_gamma, self.n_critic = float(r1_gamma), int(n_critic)

    # -- public surface -------------------------------------------------------------------------------
    def prior(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """(n, prod(data_shape) + nz): the source ε (flattened) followed by the auxiliary latent z."""
        device = generator.device if generator is not None else self.device
        source = torch.randn(n, self.source_dim, device=device, generator=generator).to(self.device)
        return torch.cat([source, super().prior(n, generator)], dim=1)

    def source_of(self, z: torch.Tensor) -> torch.Tensor:
        """The data-shaped source ε inside a prior draw."""
        return z[:, : self.source_dim].reshape(z.shape[0], *self.data_shape)

    def cost(self, source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Per-sample c(ε, T) = cost_factor · τ · Σ(T − ε)², shape (n,); in fp32 (a bf16 sum over 784 pixels
        would round the cost to ~0.4 %)."""
        return transport_cost(source.float(), target.float(), self.cost_factor * self.tau)

    # -- training -------------------------------------------------------------------------------------
    def potential_step(self, real, ctx) -> dict[str, torch.Tensor]:
        n = self.batch_size
        v_real, r1 = self.critic_with_r1(real(n), self.r1_gamma, ctx)
        with torch.no_grad():
            z = self.prior(n)
            fake = self.generate(z)
            cost = self.cost(self.source_of(z), fake)
        loss, psi1_arg_max = uot_potential_loss(v_real, self.critic(fake), cost, self.psi1, self.psi2)
        logs = {"critic_loss": loss.detach(), "psi1_arg_max": psi1_arg_max,
                "v_real": v_real.detach().float().mean()}
        ctx.optimize("critic", with_penalties(loss, logs, r1=r1))
        return logs

    def train_step(self, real, ctx):
        for _ in range(self.n_critic):
            logs = self.potential_step(real, ctx)
        z = self.prior(self.batch_size)
        fake = self.generate(z)
        cost = self.cost(self.source_of(z), fake)
        generator_loss = uot_transport_loss(self.critic(fake), cost)
        ctx.optimize("generator", generator_loss)
        return {**logs, "generator_loss": generator_loss.detach(), "transport_cost": cost.detach().mean()}
