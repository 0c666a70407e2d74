"""UOTM: generative modelling through the semi-dual of unbalanced OT (Choi, Choi, Kang, NeurIPS 2023).

The generator is a stochastic transport map T(ε, z) from a source ε ~ N(0, I) in data space (plus an
auxiliary z ~ N(0, I_nz)); the critic is the potential v. Per generator step: n_critic potential steps on
mean Ψ2*(−v(y)) + mean Ψ1*(v(T) − c(ε, T)) + R1 on real data, then one map step on mean[c(ε, T) − v(T)],
with the cost c = cost_factor · τ · Σ(T − ε)² in both (official image code: factor 1; 2-D toy code: ½).

Prior and generator input. `prior(n)` returns one tensor, the flattened concatenation [ε, z] of dimension
prod(data_shape) + nz, all N(0, I) (so samplers see an ordinary normal prior). The generator net must take
that vector: conf/method/uot.yaml makes the model's generator a `_partial_` and this class completes it
with z_dim = prod(data_shape) + nz, so no config arithmetic (resolver) is needed and the size cannot
disagree with the prior. MLP and DCGAN-style generators take [ε, z] through their first linear layer;
the official NCSN++ U-Net instead takes ε as an image and z through its embedding (not reproduced here).
As METHODS.md asks, T's output is detached in the potential step (the official code relies on zeroing G).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import torch

from otgan_lab.losses.penalties import r1_penalty
from otgan_lab.losses.uot import psi_star, transport_cost, uot_potential_loss, uot_transport_loss
from otgan_lab.methods.base import Method


class UOTM(Method):
    allows_critic_batchnorm = False  # R1 is a per-sample penalty

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
        y = real(n)
        if self.r1_gamma > 0:
            y.requires_grad_(True)
        v_real = self.critic(y)
        with torch.no_grad():
            z = self.prior(n)
            fake = self.generate(z)
            cost = self.cost(self.source_of(z), fake)
        loss, psi1_arg_max = uot_potential_loss(v_real, self.critic(fake), cost, self.psi1, self.psi2)
        logs = {"critic_loss": loss.detach(), "psi1_arg_max": psi1_arg_max,
                "v_real": v_real.detach().float().mean()}
        if self.r1_gamma > 0:
            r1 = r1_penalty(ctx.input_grad(v_real, y, "critic"), self.r1_gamma)
            loss = loss + r1
            logs["r1"] = r1.detach()
        ctx.optimize("critic", loss)
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
