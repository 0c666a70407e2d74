"""OT-GAN (Salimans, Zhang, Radford, Metaxas, "Improving GANs Using Optimal Transport", ICLR 2018).

The critic embeds samples; the loss is the minibatch energy distance L = W(X,Y) + W(X,Y') + W(X',Y) +
W(X',Y') - 2 W(X,X') - 2 W(Y,Y') between two real and two generated batches, W the sharp Sinkhorn value
<P, C> under the cosine cost of the L2-normalised embeddings, P held constant (envelope theorem). The critic
ascends L on iterations t % (n_gen + 1) == 0, the generator descends it on the others (METHODS.md §6).

Choices: sinkhorn_eps 0.01 (cosine costs lie in [0, 2]), not the paper's 0.002: on ring8 its sharp values
are within 6 % of 0.002's, whose marginals are still ~35 % of 1/K off after 500 iterations (0.01: ~3 %).
`loss: cross_entropy` is report R2's ablation: a linear logit head on the (unnormalised) embedding and the
logistic GAN loss, same schedule and batches; only then is there a scalar critic(x).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from otgan_lab.amp import upcast
from otgan_lab.losses.adversarial import gan_critic_loss, gan_generator_loss
from otgan_lab.methods.base import Capabilities, Method
from otgan_lab.ot.energy import minibatch_energy_distance

LOSSES = ("energy", "cross_entropy")


class OTGAN(Method):
    declared_capabilities = Capabilities(critic=False)  # loss=energy: the critic is an embedding, no score
    integer_options = {"n_gen": 1}

    @classmethod
    def real_batches_per_step(cls, options: Mapping[str, Any]) -> int:
        return 2  # X and X', every iteration

    @classmethod
    def capabilities_for(cls, options: Mapping[str, Any]) -> Capabilities:
        if options.get("loss", "energy") == "cross_entropy":  # the ablation's critic ends in a logit
            return replace(cls.declared_capabilities, critic=True, logit_critic=True)
        return cls.declared_capabilities

    def __init__(self, *, loss: str = "energy", n_gen: int = 3, critic_out_dim: int = 256,
                 sinkhorn_eps: float = 0.01, sinkhorn_iters: int = 500, sinkhorn_tol: float | None = 0.05,
                 sinkhorn_eps_scaling: float | None = None, **kw):
        super().__init__(options={"loss": loss}, **kw)
        if loss not in LOSSES:
            raise ValueError(f"OT-GAN loss must be one of {LOSSES}, got {loss!r}")
        if loss == "energy" and critic_out_dim < 2:
            raise ValueError("the cosine cost needs a critic embedding of >= 2 dims, got "
                             f"critic_out_dim={critic_out_dim}")
        self.loss, self.n_gen = loss, int(n_gen)
        if sinkhorn_eps_scaling is not None and not 0.0 < sinkhorn_eps_scaling < 1.0:
            raise ValueError("sinkhorn_eps_scaling must be null (solve at sinkhorn_eps directly) or a "
                             "ratio in (0, 1) by which eps is annealed down to sinkhorn_eps, got "
                             f"{sinkhorn_eps_scaling}")
        scaling = None if sinkhorn_eps_scaling is None else float(sinkhorn_eps_scaling)
        self.sinkhorn = {"eps": float(sinkhorn_eps), "n_iters": int(sinkhorn_iters), "eps_scaling": scaling}
        self.sinkhorn_tol = None if sinkhorn_tol is None else float(sinkhorn_tol)
        if loss == "cross_entropy":
            # The logit head joins the critic module, so the "critic" optimizer, checkpoints and samplers
            # that fine-tune critic_module all see one net: (n, ...) -> embedding -> (n,) logit.
            self.nets["critic"] = nn.Sequential(self.nets["critic"], nn.Linear(critic_out_dim, 1),
                                                nn.Flatten(0))

    def critic(self, x: torch.Tensor) -> torch.Tensor:
        if not self.has_critic:
            raise NotImplementedError("OT-GAN (loss=energy) has no scalar critic: its critic is the "
                                      "embedding of a learned cosine cost; use embed(x)")
        return upcast(self.nets["critic"](x))  # float32 scores under autocast, as Method.critic

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The critic's L2-normalised embedding (n, critic_out_dim) that defines the cosine cost."""
        net = self.nets["critic"][0] if self.loss == "cross_entropy" else self.nets["critic"]
        return F.normalize(net(x), dim=-1)

    def critic_updates_at(self, step: int) -> bool:
        """The paper's schedule over generator iterations: the critic takes 1 of every n_gen + 1."""
        return step % (self.n_gen + 1) == 0

    def train_step(self, real, ctx):
        n = self.batch_size
        critic_turn = self.critic_updates_at(ctx.step)
        reals = torch.cat([real(n), real(n)])  # X, X': two independent draws
        with torch.set_grad_enabled(torch.is_grad_enabled() and not critic_turn):
            fakes = self.sample(2 * n)  # Y, Y' (no graph into the generator on critic iterations)
        if self.loss == "energy":
            emb_x, emb_x2, emb_y, emb_y2 = self.nets["critic"](torch.cat([reals, fakes])).split(n)
            tol = None if self.sinkhorn_tol is None else self.sinkhorn_tol / n
            loss = minibatch_energy_distance(emb_x, emb_x2, emb_y, emb_y2, **self.sinkhorn, tol=tol)
            if critic_turn:
                ctx.optimize("critic", -loss)  # the critic ascends L
            else:
                ctx.optimize("generator", loss)
            return {"energy_distance": loss.detach()}
        logits_real, logits_fake = self.critic(torch.cat([reals, fakes])).split(2 * n)
        critic_loss = gan_critic_loss(logits_real, logits_fake)
        generator_loss = gan_generator_loss(logits_fake, "non_saturating")
        if critic_turn:
            ctx.optimize("critic", critic_loss)
        else:
            ctx.optimize("generator", generator_loss)
        return {"critic_loss": critic_loss.detach(), "generator_loss": generator_loss.detach()}
