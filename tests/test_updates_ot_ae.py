"""Update tests for the OT and autoencoder methods (issue 13): OT-GAN, MD-GAN, unrolled GAN, AE-OT,
AE-OT-GAN, WAE-MMD and WAE-GAN, each against the update written out from METHODS.md (§6-§9; WAE from
Tolstikhin et al. 2018 and its official code, which METHODS.md does not cover).

Every test builds the method on tiny networks, supplies every real batch through a recording `real(n)`, fixes
the prior draws with `torch.manual_seed` (the oracle redraws them from the same seed with the prior the paper
prescribes), runs `train_step` (as many as one schedule cycle needs) and checks, for EVERY network,

1. the logged loss values, and
2. the parameter update,

against an oracle computed here independently of the project's loss and OT functions: the formulas are
spelled out (softplus for the logistic losses, the simplex mixture density, the IMQ kernel, a few-line
log-domain Sinkhorn), gradients come from plain autograd on deep copies of the networks, and the methods get
plain SGD, so the expected update is p - lr * grad exactly. The learning rates of the optimizers differ, so a
loss sent to the wrong optimizer cannot match. Calls to `real(n)` (count and sizes) and the optimizers the
step used (names, in order) are checked too.

The comment above each test names source mutations it was seen to catch (each edit made, the test run and
seen to FAIL, the line restored).
"""

from __future__ import annotations

import copy
import math
from functools import partial
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn
from torch.func import functional_call

from otgan_lab.amp import Precision
from otgan_lab.methods.aeot import AEOT
from otgan_lab.methods.aeot_gan import AEOTGAN
from otgan_lab.methods.mdgan import MDGAN
from otgan_lab.methods.otgan import OTGAN
from otgan_lab.methods.unrolled import UnrolledGAN
from otgan_lab.methods.wae import WAEGAN, WAEMMD
from tests.helpers import recording_context_class

FP32 = Precision("fp32", "cpu")
TOL64 = dict(rtol=1e-9, atol=1e-11)  # float64 nets, float64 losses
TOL32 = dict(rtol=2e-5, atol=2e-6)  # the autoencoder methods compute their losses in float32


# -- plumbing ---------------------------------------------------------------------------------------------
class RealBatches:
    """real(n): a fresh, recorded batch on every call, from its own generator (not the global RNG)."""

    def __init__(self, dim: int, seed: int = 7, shift: float = 0.5):
        self.gen = torch.Generator().manual_seed(seed)
        self.dim, self.shift = dim, shift
        self.sizes: list[int] = []
        self.batches: list[torch.Tensor] = []

    def __call__(self, n: int) -> torch.Tensor:
        x = 0.8 * torch.randn(n, self.dim, generator=self.gen, dtype=torch.get_default_dtype()) + self.shift
        self.sizes.append(n)
        self.batches.append(x.clone())
        return x

    def take(self) -> list[torch.Tensor]:
        """The batches drawn since the last take(), in order (and forget them)."""
        out, self.batches, self.sizes = self.batches, [], []
        return out


RecordingContext = recording_context_class()


def sgd(lr: float):
    return partial(torch.optim.SGD, lr=lr)


def mlp(n_in: int, hidden: int, n_out: int, flatten: bool = False) -> nn.Module:
    layers = [nn.Linear(n_in, hidden), nn.Tanh(), nn.Linear(hidden, n_out)]
    return nn.Sequential(*layers, *([nn.Flatten(0)] if flatten else []))


def snapshot(net: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in net.parameters()]


def grads(loss: torch.Tensor, net: nn.Module) -> list[torch.Tensor]:
    return list(torch.autograd.grad(loss, list(net.parameters()), retain_graph=True))


def sgd_step(before: list[torch.Tensor], g: list[torch.Tensor], lr: float) -> list[torch.Tensor]:
    return [p - lr * gi for p, gi in zip(before, g)]


def assert_params(net: nn.Module, expected: list[torch.Tensor], tol: dict, what: str) -> None:
    got = snapshot(net)
    assert len(got) == len(expected), what
    for i, (a, b) in enumerate(zip(got, expected)):
        torch.testing.assert_close(a, b.detach(), **tol, msg=lambda m, i=i: f"{what}, parameter {i}: {m}")


def assert_unchanged(net: nn.Module, before: list[torch.Tensor], what: str) -> None:
    assert all(torch.equal(a, b) for a, b in zip(snapshot(net), before)), f"{what} must not move"


def max_abs_diff(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    return max(float((x - y).abs().max()) for x, y in zip(a, b))


def log_softplus_d(logit: torch.Tensor) -> torch.Tensor:
    """log D = log sigmoid(l) = -log(1 + e^{-l}), written out."""
    return -torch.log1p(torch.exp(-logit))


def log_one_minus_d(logit: torch.Tensor) -> torch.Tensor:
    """log(1 - D) = log sigmoid(-l) = -log(1 + e^{l})."""
    return -torch.log1p(torch.exp(logit))


def method_yaml(name: str):
    """The method's shipped config (the repository's conf/ tree), read as plain YAML."""
    return OmegaConf.load(Path(__file__).resolve().parents[1] / "conf" / "method" / f"{name}.yaml")


# =========================================================================================================
# OT-GAN (METHODS.md §6)
# =========================================================================================================
OT_N, OT_Z, OT_EMB = 6, 3, 5
OT_EPS, OT_ITERS = 0.1, 60  # the oracle runs the same iterations from the same start
OT_LR_G, OT_LR_C = 0.07, 0.13


def sinkhorn_plan(cost: torch.Tensor, eps: float, iters: int) -> torch.Tensor:
    """Log-domain Sinkhorn, uniform marginals, column update then row update (Peyré & Cuturi §4.4).

    Differentiable if `cost` carries a graph (used only for the "gradient through the plan" power check)."""
    n, m = cost.shape
    log_a = torch.full((n, 1), -math.log(n), dtype=cost.dtype)
    log_b = torch.full((1, m), -math.log(m), dtype=cost.dtype)
    f = torch.zeros(n, 1, dtype=cost.dtype)
    g = torch.zeros(1, m, dtype=cost.dtype)
    for _ in range(iters):
        g = -eps * torch.logsumexp((f - cost) / eps + log_a, dim=0, keepdim=True)
        f = -eps * torch.logsumexp((g - cost) / eps + log_b, dim=1, keepdim=True)
    return torch.exp((f + g - cost) / eps + log_a + log_b)


def cosine(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return 1.0 - (u / u.norm(dim=1, keepdim=True)) @ (v / v.norm(dim=1, keepdim=True)).T


def otgan_energy(gen, critic, x1, x2, z, *, through_plan: bool = False) -> torch.Tensor:
    """L = W(X,Y) + W(X,Y') + W(X',Y) + W(X',Y') - 2 W(X,X') - 2 W(Y,Y'), W = <P, C>, P constant."""
    fake = gen(z)
    y1, y2 = fake[:OT_N], fake[OT_N:]
    ex1, ex2, ey1, ey2 = critic(x1), critic(x2), critic(y1), critic(y2)

    def w(u, v):
        c = cosine(u, v)
        plan = sinkhorn_plan(c if through_plan else c.detach(), OT_EPS, OT_ITERS)
        return (plan * c).sum()

    return (w(ex1, ey1) + w(ex1, ey2) + w(ex2, ey1) + w(ex2, ey2)
            - 2.0 * w(ex1, ex2) - 2.0 * w(ey1, ey2))


def make_otgan() -> OTGAN:
    torch.manual_seed(0)
    return OTGAN(name="otgan", batch_size=OT_N, prior={"kind": "uniform", "dim": OT_Z},
                 optim={"generator": sgd(OT_LR_G), "critic": sgd(OT_LR_C)}, critic_out_dim=OT_EMB,
                 sinkhorn_eps=OT_EPS, sinkhorn_iters=OT_ITERS, sinkhorn_tol=None,
                 generator=mlp(OT_Z, 8, 2), critic=mlp(2, 8, OT_EMB))  # n_gen: the default


def test_otgan_config_is_the_papers_schedule_and_prior():
    cfg = method_yaml("otgan")
    assert cfg.n_gen == 3 and cfg.loss == "energy"
    assert cfg.prior.kind == "uniform"


# Mutations caught: plan differentiable (entropic_ot_loss through an unrolled, graph-keeping log-domain
# Sinkhorn: same values, other gradients); schedule 1:1 (`step % 2 == 0`); default n_gen 3 -> 1; critic
# descending L (`ctx.optimize("critic", loss)`); X' = X (one real batch repeated); repulsive weight -2 -> -1
# in _ENERGY_TERMS; prior U[0, 1] instead of U[-1, 1] (Method.prior).
def test_otgan_one_schedule_cycle_matches_the_paper(float64):
    method = make_otgan()
    gen, critic = method.nets["generator"], method.nets["critic"]
    ctx = RecordingContext(method.configure_optimizers(), FP32)
    real = RealBatches(2)
    plan_path_seen = {"critic": 0.0, "generator": 0.0}
    for t in range(5):  # critic, generator x 3, critic: one full cycle and the start of the next
        ctx.step = t
        g_copy, c_copy = copy.deepcopy(gen), copy.deepcopy(critic)
        g_before, c_before = snapshot(gen), snapshot(critic)
        torch.manual_seed(100 + t)
        out = method.train_step(real, ctx)
        assert real.sizes == [OT_N, OT_N], "two independent real batches X, X' of the batch size"
        x1, x2 = real.take()

        torch.manual_seed(100 + t)
        z = torch.rand(2 * OT_N, OT_Z) * 2.0 - 1.0  # z ~ U[-1, 1]: Y, Y' from one draw of 2K codes
        energy = otgan_energy(g_copy, c_copy, x1, x2, z)
        torch.testing.assert_close(out["energy_distance"], energy.detach(), **TOL64)

        critic_turn = t % 4 == 0  # one critic update per three generator updates
        assert ctx.updates[-1] == ("critic" if critic_turn else "generator")
        if critic_turn:  # the critic ASCENDS L: p <- p - lr * grad(-L)
            expected = sgd_step(c_before, grads(-energy, c_copy), OT_LR_C)
            assert_params(critic, expected, TOL64, f"critic at t={t}")
            assert_unchanged(gen, g_before, f"generator at critic iteration t={t}")
            net, net_copy, lr, sign = "critic", c_copy, OT_LR_C, -1.0
        else:  # the generator descends L, the critic is left alone
            expected = sgd_step(g_before, grads(energy, g_copy), OT_LR_G)
            assert_params(gen, expected, TOL64, f"generator at t={t}")
            assert_unchanged(critic, c_before, f"critic at generator iteration t={t}")
            net, net_copy, lr, sign = "generator", g_copy, OT_LR_G, 1.0
        if t > 1:
            continue
        # power check: differentiating through the plan would give a visibly different update
        through = otgan_energy(g_copy, c_copy, x1, x2, z, through_plan=True)
        torch.testing.assert_close(through, energy)  # same value, different gradient
        alt = sgd_step(g_before if net == "generator" else c_before, grads(sign * through, net_copy), lr)
        plan_path_seen[net] = max(plan_path_seen[net], max_abs_diff(alt, expected))
    assert ctx.updates == ["critic", "generator", "generator", "generator", "critic"]
    assert min(plan_path_seen.values()) > 1e-6, plan_path_seen  # >> TOL64: the test can tell the two apart


# Mutations caught: sinkhorn_eps_scaling not passed to the solver (the capped unscaled solve is far from the
# converged value); the range check dropped.
def test_otgan_eps_scaling_reaches_the_converged_energy(float64):
    """With sinkhorn_eps_scaling the logged energy is the converged one (oracle: the plain log-domain Sinkhorn
    run to convergence), reached within a cap that the direct solve at this small eps cannot converge in."""
    eps, cap = 0.002, 200
    energies = {}
    for scaling in (None, 0.5):
        torch.manual_seed(0)
        method = OTGAN(name="otgan", batch_size=OT_N, prior={"kind": "uniform", "dim": OT_Z},
                       optim={"generator": sgd(OT_LR_G), "critic": sgd(OT_LR_C)}, critic_out_dim=OT_EMB,
                       sinkhorn_eps=eps, sinkhorn_iters=cap, sinkhorn_tol=1e-9, sinkhorn_eps_scaling=scaling,
                       generator=mlp(OT_Z, 8, 2), critic=mlp(2, 8, OT_EMB))
        gen, critic = copy.deepcopy(method.nets["generator"]), copy.deepcopy(method.nets["critic"])
        real = RealBatches(2)
        torch.manual_seed(100)
        out = method.train_step(real, RecordingContext(method.configure_optimizers(), FP32))
        energies[scaling] = out["energy_distance"]
    x1, x2 = real.take()
    torch.manual_seed(100)
    z = torch.rand(2 * OT_N, OT_Z) * 2.0 - 1.0
    with torch.no_grad():
        fake = gen(z)
        emb = [critic(t) for t in (x1, x2, fake[:OT_N], fake[OT_N:])]

    def w(u, v):
        c = cosine(u, v)
        return (sinkhorn_plan(c, eps, 20000) * c).sum()

    converged = (w(emb[0], emb[2]) + w(emb[0], emb[3]) + w(emb[1], emb[2]) + w(emb[1], emb[3])
                 - 2.0 * w(emb[0], emb[1]) - 2.0 * w(emb[2], emb[3]))
    torch.testing.assert_close(energies[0.5], converged, rtol=1e-5, atol=1e-6)
    assert (energies[None] - converged).abs().item() > 1e-4, "the test needs a cap the direct solve misses"
    with pytest.raises(ValueError, match="sinkhorn_eps_scaling"):
        OTGAN(name="otgan", batch_size=OT_N, prior={"kind": "uniform", "dim": OT_Z}, optim={},
              sinkhorn_eps_scaling=1.5, generator=mlp(OT_Z, 8, 2), critic=mlp(2, 8, OT_EMB))


# =========================================================================================================
# MD-GAN (METHODS.md §7)
# =========================================================================================================
MD_N, MD_Z, MD_D = 8, 2, 3
MD_SIGMA2, MD_SCALE, MD_REG = 0.25, 2.0, 1e-8
MD_LR_G, MD_LR_C = 0.07, 0.13


def make_mdgan(form: str) -> MDGAN:
    torch.manual_seed(1)
    return MDGAN(name="mdgan", batch_size=MD_N, prior={"kind": "normal", "dim": MD_Z},
                 optim={"generator": sgd(MD_LR_G), "critic": sgd(MD_LR_C)}, critic_out_dim=MD_D,
                 sigma2=MD_SIGMA2, simplex_scale=MD_SCALE, generator_loss=form,
                 generator=mlp(MD_Z, 8, 2), critic=mlp(2, 8, MD_D))


def sgmm_density(e: torch.Tensor, means: torch.Tensor) -> torch.Tensor:
    """L(e) = sum_k 1/(d+1) N(e; mu_k, sigma^2 I), written out (no log-space tricks)."""
    k, d = means.shape
    sq = ((e[:, None, :] - means[None, :, :]) ** 2).sum(-1)
    norm = (2.0 * math.pi * MD_SIGMA2) ** (-d / 2)
    return (norm * torch.exp(-sq / (2.0 * MD_SIGMA2))).sum(1) / k


def sgmm_max(means: torch.Tensor) -> float:
    """max_e L(e) by mean-shift fixed-point iterations from every vertex, the centroid and random points."""
    starts = torch.cat([means, torch.zeros(1, means.shape[1]),
                        3.0 * torch.randn(32, means.shape[1], generator=torch.Generator().manual_seed(5))])
    e = starts.clone()
    for _ in range(3000):
        w = torch.exp(-((e[:, None, :] - means[None]) ** 2).sum(-1) / (2.0 * MD_SIGMA2))
        e = (w / w.sum(1, keepdim=True)) @ means
    return float(sgmm_density(e, means).max())


def md_embed(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return 5.0 * torch.sigmoid(net(x)) - 2.5  # the reference's squashed embedding


def test_mdgan_simplex_and_lambda(float64):
    method = make_mdgan("minimax")
    means = method.critic_module.means
    d = MD_D
    assert means.shape == (d + 1, d)  # d + 1 equally weighted components
    torch.testing.assert_close(means.norm(dim=1), torch.full((d + 1,), MD_SCALE))
    torch.testing.assert_close(means.sum(0), torch.zeros(d), atol=1e-12, rtol=0)
    gram = means @ means.T
    off = gram[~torch.eye(d + 1, dtype=torch.bool)]
    torch.testing.assert_close(off, torch.full_like(off, -MD_SCALE**2 / d))  # pairwise cosine -1/d
    lam = sgmm_max(means)
    torch.testing.assert_close(float(method.log_lambda), math.log(lam), rtol=1e-10, atol=1e-10)
    cfg = method_yaml("mdgan")
    assert (cfg.sigma2, cfg.critic_out_dim, cfg.generator_loss, cfg.reg) == (0.25, 9, "minimax", 1e-8)


# Mutations caught: discriminator loss sign (`-real_term - fake_term` -> `real_term - fake_term`); real/fake
# swapped in train_step; covariance 2 sigma^2 -> sigma^2 in _log_components; mixture weights 1/K -> 1
# (only the reg term moves the update: caught at 6.6e-7 by the float64 tolerance, and by the loss value);
# simplex_scale ignored; NS/minimax swapped; Gaussian prior replaced by U[0, 1].
@pytest.mark.parametrize("form", ["minimax", "non_saturating"])
def test_mdgan_step_matches_the_reference_losses(float64, form):
    method = make_mdgan(form)
    gen, emb = method.nets["generator"], method.critic_module.embedding
    means = method.critic_module.means.clone()
    torch.testing.assert_close(means.norm(dim=1), torch.full((MD_D + 1,), MD_SCALE))  # the scaled simplex
    lam = sgmm_max(means)
    ctx = RecordingContext(method.configure_optimizers(), FP32)
    real = RealBatches(2)
    g_copy, c_copy = copy.deepcopy(gen), copy.deepcopy(emb)
    g_before, c_before = snapshot(gen), snapshot(emb)
    torch.manual_seed(11)
    out = method.train_step(real, ctx)
    assert real.sizes == [MD_N] and ctx.updates == ["critic", "generator"]
    (x,) = real.take()

    torch.manual_seed(11)
    z_critic, z_gen = torch.randn(MD_N, MD_Z), torch.randn(MD_N, MD_Z)  # two prior draws, in this order
    # critic step: L_D = -E log(reg + L(e(x))) - E log(reg + lambda - L(e(G(z))))
    fake = g_copy(z_critic).detach()
    l_real, l_fake = sgmm_density(md_embed(c_copy, x), means), sgmm_density(md_embed(c_copy, fake), means)
    loss_d = -torch.log(MD_REG + l_real).mean() - torch.log(MD_REG + lam - l_fake).mean()
    c_after = sgd_step(c_before, grads(loss_d, c_copy), MD_LR_C)
    assert_params(emb, c_after, TOL64, "critic")
    # generator step against the UPDATED critic, on a fresh draw
    with torch.no_grad():
        for p, v in zip(c_copy.parameters(), c_after):
            p.copy_(v)
    l_gen = sgmm_density(md_embed(c_copy, g_copy(z_gen)), means)
    if form == "minimax":
        loss_g = torch.log(MD_REG + lam - l_gen).mean()
    else:
        loss_g = -torch.log(MD_REG + l_gen).mean()
    assert_params(gen, sgd_step(g_before, grads(loss_g, g_copy), MD_LR_G), TOL64, "generator")

    torch.testing.assert_close(out["critic_loss"], loss_d.detach(), **TOL64)
    torch.testing.assert_close(out["generator_loss"], loss_g.detach(), **TOL64)
    torch.testing.assert_close(out["d_real"], (l_real / lam).mean().detach(), **TOL64)
    torch.testing.assert_close(out["d_fake"], (l_fake / lam).mean().detach(), **TOL64)


# =========================================================================================================
# Unrolled GAN (METHODS.md §8)
# =========================================================================================================
UN_N, UN_Z = 8, 3
UN_LR_G, UN_LR_C = 0.07, 0.9  # a large critic step makes theta_D^K depend visibly on theta_G


def make_unrolled(k: int, variant: str, form: str = "minimax", critic_optim=None) -> UnrolledGAN:
    torch.manual_seed(2)
    return UnrolledGAN(name="unrolled", batch_size=UN_N, prior={"kind": "normal", "dim": UN_Z},
                       optim={"generator": sgd(UN_LR_G), "critic": critic_optim or sgd(UN_LR_C)},
                       unroll_steps=k, variant=variant, generator_loss=form,
                       generator=mlp(UN_Z, 8, 2), critic=mlp(2, 8, 1, flatten=True))


def critic_bce(critic, params, x, fake) -> torch.Tensor:
    """-f = -E log D(x) - E log(1 - D(G(z))): the critic's loss (D ascends f)."""
    return (-log_softplus_d(functional_call(critic, params, (x,))).mean()
            - log_one_minus_d(functional_call(critic, params, (fake,))).mean())


def sgd_inner(params, g, lr):
    return {k: v - lr * gi for (k, v), gi in zip(params.items(), g)}


def unrolled_surrogate(gen, critic, x, z, k, variant, form, inner=None):
    """f_K(theta_G) = E log D_K(x) + E log(1 - D_K(G(z))) (minimax; NS: -E log D_K(G(z)) for the second term)
    with theta_D^{k+1} = theta_D^k - step(grad(-f)). exact: fakes attached and the steps differentiated
    (create_graph); lookahead: detached fakes, theta_D^K a constant."""
    inner = inner or (lambda params, g, state: (sgd_inner(params, g, UN_LR_C), state))
    fake = gen(z)
    exact = variant == "exact"
    params, state = dict(critic.named_parameters()), None
    for _ in range(k):
        if not exact:
            params = {n: p.detach().requires_grad_(True) for n, p in params.items()}
        loss = critic_bce(critic, params, x, fake if exact else fake.detach())
        g = torch.autograd.grad(loss, list(params.values()), create_graph=exact)
        params, state = inner(params, g, state)
    if not exact:
        params = {n: p.detach() for n, p in params.items()}
    real_term = log_softplus_d(functional_call(critic, params, (x,))).mean()
    logit_fake = functional_call(critic, params, (fake,))
    fake_term = (log_one_minus_d(logit_fake).mean() if form == "minimax"
                 else -log_softplus_d(logit_fake).mean())
    return real_term + fake_term


def run_unrolled_step(method, ctx):
    gen, critic = method.nets["generator"], method.nets["critic"]
    real = RealBatches(2)
    g_copy, c_copy = copy.deepcopy(gen), copy.deepcopy(critic)
    before = snapshot(gen), snapshot(critic)
    torch.manual_seed(21)
    out = method.train_step(real, ctx)
    assert real.sizes == [UN_N] and ctx.updates == ["generator", "critic"]
    (x,) = real.take()
    torch.manual_seed(21)
    z = torch.randn(UN_N, UN_Z)  # ONE prior draw: the unroll and both updates use the same batch
    return out, x, z, g_copy, c_copy, before


# Mutations caught: generator loss at the un-unrolled critic (unroll_steps -> 0 in unrolled_generator_loss);
# exact run without the second-order term (create_graph=False); lookahead run as exact (`exact = True`);
# one inner step fewer (`range(steps - 1)`); critic stepped on a fresh fake batch; generator loss
# real_term - fake term; a second critic update in the step.
@pytest.mark.parametrize("variant", ["exact", "lookahead"])
@pytest.mark.parametrize("k", [0, 1, 3])
def test_unrolled_step_matches_the_surrogate(float64, k, variant):
    method = make_unrolled(k, variant)
    ctx = RecordingContext(method.configure_optimizers(), FP32)
    gen, critic = method.nets["generator"], method.nets["critic"]
    out, x, z, g_copy, c_copy, (g_before, c_before) = run_unrolled_step(method, ctx)

    f_k = unrolled_surrogate(g_copy, c_copy, x, z, k, variant, "minimax")
    torch.testing.assert_close(out["generator_loss"], f_k.detach(), **TOL64)
    g_expected = sgd_step(g_before, grads(f_k, g_copy), UN_LR_G)  # G descends f_K (the notebook's minimax)
    assert_params(gen, g_expected, TOL64, f"generator (K={k}, {variant})")
    # the critic's ordinary step from theta_D^0 on the same x and fakes (generated before G's update)
    params0 = dict(c_copy.named_parameters())
    loss_d = critic_bce(c_copy, params0, x, g_copy(z).detach())
    torch.testing.assert_close(out["critic_loss"], loss_d.detach(), **TOL64)
    assert_params(critic, sgd_step(c_before, grads(loss_d, c_copy), UN_LR_C), TOL64, "critic")

    # power checks: K = 0 is the plain minimax GAN; for K >= 1 the second-order term and K both matter
    plain = log_one_minus_d(c_copy(g_copy(z))).mean()
    plain_update = sgd_step(g_before, grads(plain, g_copy), UN_LR_G)
    other = "lookahead" if variant == "exact" else "exact"
    other_update = sgd_step(g_before, grads(unrolled_surrogate(g_copy, c_copy, x, z, k, other, "minimax"),
                                            g_copy), UN_LR_G)
    if k == 0:
        assert max_abs_diff(g_expected, plain_update) < 1e-12
    else:
        assert max_abs_diff(g_expected, plain_update) > 1e-4
        assert max_abs_diff(g_expected, other_update) > 1e-5
        fewer = unrolled_surrogate(g_copy, c_copy, x, z, k - 1, variant, "minimax")
        assert max_abs_diff(g_expected, sgd_step(g_before, grads(fewer, g_copy), UN_LR_G)) > 1e-5


# Mutation caught: the NS generator dropping the real-data term E log D_K(x) (K >= 1 makes it depend on G).
def test_unrolled_non_saturating_form(float64):
    method = make_unrolled(2, "exact", "non_saturating")
    ctx = RecordingContext(method.configure_optimizers(), FP32)
    out, x, z, g_copy, c_copy, (g_before, _) = run_unrolled_step(method, ctx)
    f_k = unrolled_surrogate(g_copy, c_copy, x, z, 2, "exact", "non_saturating")
    torch.testing.assert_close(out["generator_loss"], f_k.detach(), **TOL64)
    assert_params(method.nets["generator"], sgd_step(g_before, grads(f_k, g_copy), UN_LR_G), TOL64,
                  "generator")


def adam_inner(lr, betas, eps):
    """A differentiable torch.optim.Adam step (written out), carrying (m, v, t) per parameter."""
    b1, b2 = betas

    def step(params, g, state):
        new, new_state = {}, {}
        for (name, p), gi in zip(params.items(), g):
            m, v, t = state[name]
            m, v, t = b1 * m + (1 - b1) * gi, b2 * v + (1 - b2) * gi * gi, t + 1
            new[name] = p - lr / (1 - b1**t) * m / (torch.sqrt(v) / math.sqrt(1 - b2**t) + eps)
            new_state[name] = (m, v, t)
        return new, new_state

    return step


# Mutation caught: the unroll starting Adam from a fresh state instead of the critic optimizer's (m, v, t).
def test_unrolled_exact_mirrors_the_critic_adam(float64):
    lr, betas, eps = 0.05, (0.5, 0.9), 1e-8
    method = make_unrolled(2, "exact", critic_optim=partial(torch.optim.Adam, lr=lr, betas=betas, eps=eps))
    ctx = RecordingContext(method.configure_optimizers(), FP32)
    critic, opt = method.nets["critic"], ctx.optimizers["critic"]
    gen_ = torch.Generator().manual_seed(9)
    for _ in range(2):  # a non-trivial Adam state
        for p in critic.parameters():
            p.grad = torch.randn(p.shape, generator=gen_)
        opt.step()
    names = [n for n, _ in critic.named_parameters()]
    state0 = {n: (opt.state[p]["exp_avg"].clone(), opt.state[p]["exp_avg_sq"].clone(), 2)
              for n, p in zip(names, critic.parameters())}
    out, x, z, g_copy, c_copy, (g_before, c_before) = run_unrolled_step(method, ctx)

    inner = adam_inner(lr, betas, eps)
    f_k = unrolled_surrogate(g_copy, c_copy, x, z, 2, "exact", "minimax",
                             inner=lambda params, g, s: inner(params, g, s or state0))
    torch.testing.assert_close(out["generator_loss"], f_k.detach(), **TOL64)
    assert_params(method.nets["generator"], sgd_step(g_before, grads(f_k, g_copy), UN_LR_G), TOL64,
                  "generator")
    # the critic's real step: one Adam step from theta_D^0 (= the first unrolled step, same batch)
    loss_d = critic_bce(c_copy, dict(c_copy.named_parameters()), x, g_copy(z).detach())
    params1, _ = inner(dict(c_copy.named_parameters()), grads(loss_d, c_copy), state0)
    assert_params(critic, list(params1.values()), TOL64, "critic")


def test_unrolled_config_defaults():
    cfg = method_yaml("unrolled")
    assert (cfg.unroll_steps, cfg.variant, cfg.generator_loss) == (5, "exact", "minimax")


# =========================================================================================================
# AE-OT (METHODS.md §9)
# =========================================================================================================
AE_N, AE_X, AE_Z = 8, 4, 2
AE_LR, AE_LR_G, AE_LR_C = 0.05, 0.07, 0.13


def ae_nets():
    torch.manual_seed(3)
    return {"encoder": mlp(AE_X, 8, AE_Z), "decoder": mlp(AE_Z, 8, AE_X)}


# Mutations caught: L1 code term dropped; L1 summed over the batch (pyOMT's torch.norm(z, 1)) instead of the
# batch mean the code documents; MSE summed instead of averaged; the autoencoder optimizer stepping the
# decoder only (AutoEncoderMethod.optimizer_nets).
def test_aeot_autoencoder_step():
    code_l1 = 0.3  # large, so the code term is visible in the update (the default is 1e-5)
    nets = ae_nets()
    method = AEOT(name="aeot", batch_size=AE_N, prior={"kind": "normal", "dim": AE_Z},
                  optim={"autoencoder": sgd(AE_LR)}, code_l1=code_l1, **nets)
    ctx = RecordingContext(method.configure_optimizers(), FP32)
    real = RealBatches(AE_X)
    enc, dec = method.nets["encoder"], method.nets["decoder"]
    e_copy, d_copy = copy.deepcopy(enc), copy.deepcopy(dec)
    e_before, d_before = snapshot(enc), snapshot(dec)
    out = method.train_step(real, ctx)
    assert real.sizes == [AE_N] and ctx.updates == ["autoencoder"]
    (x,) = real.take()

    z = e_copy(x)
    mse = ((d_copy(z) - x) ** 2).mean()  # over all elements
    l1 = z.abs().sum(1).mean()  # E ||z||_1: per-code L1 norm, batch mean (aeot.py's documented form)
    loss = mse + code_l1 * l1
    torch.testing.assert_close(out["reconstruction"], mse.detach(), **TOL32)
    torch.testing.assert_close(out["code_l1"], l1.detach(), **TOL32)
    assert_params(enc, sgd_step(e_before, grads(loss, e_copy), AE_LR), TOL32, "encoder")
    assert_params(dec, sgd_step(d_before, grads(loss, d_copy), AE_LR), TOL32, "decoder")
    assert method_yaml("aeot").code_l1 == 1e-5


# =========================================================================================================
# AE-OT-GAN (METHODS.md §9: adversarial + pairing loss, generator = decoder fed extended-OT-map codes)
# =========================================================================================================
AG_CODES, AG_PAIR, AG_AE_STEPS, AG_L1 = 16, 3.0, 5, 0.2


def make_aeot_gan() -> AEOTGAN:
    nets = ae_nets()
    nets["critic"] = mlp(AE_X, 8, 1, flatten=True)
    return AEOTGAN(name="aeot_gan", batch_size=AE_N, prior={"kind": "normal", "dim": AE_Z},
                   optim={"autoencoder": sgd(AE_LR), "generator": sgd(AE_LR_G), "critic": sgd(AE_LR_C)},
                   code_l1=AG_L1, ae_steps=AG_AE_STEPS, pair_weight=AG_PAIR,
                   ot={"n_codes": AG_CODES, "solver": {"max_iter": 40, "n_samples": 2048, "max_samples": 2048,
                                                       "lr": 1e-2, "time_limit_s": None}},
                   generation={"angle_threshold": math.pi, "k": 4, "interp": 0.75}, **nets)


def gan_critic_oracle(critic, x, fake):
    return -log_softplus_d(critic(x)).mean() - log_one_minus_d(critic(fake)).mean()


# Mutations caught: critic warm-up on real vs real; critic loss with real/fake swapped (_critic_step).
def test_aeot_gan_phase1_autoencoder_and_critic_warmup():
    method = make_aeot_gan()
    ctx = RecordingContext(method.configure_optimizers(), FP32)
    real = RealBatches(AE_X)
    enc, dec, critic = (method.nets[k] for k in ("encoder", "decoder", "critic"))
    e_copy, d_copy, c_copy = (copy.deepcopy(n) for n in (enc, dec, critic))
    before = {k: snapshot(method.nets[k]) for k in ("encoder", "decoder", "critic")}
    ctx.step = AG_AE_STEPS - 1  # the last phase-1 iteration
    out = method.train_step(real, ctx)
    assert real.sizes == [AE_N] and ctx.updates == ["autoencoder", "critic"]
    (x,) = real.take()

    z = e_copy(x)
    rec = d_copy(z)
    loss = ((rec - x) ** 2).mean() + AG_L1 * z.abs().sum(1).mean()
    assert_params(enc, sgd_step(before["encoder"], grads(loss, e_copy), AE_LR), TOL32, "encoder")
    assert_params(dec, sgd_step(before["decoder"], grads(loss, d_copy), AE_LR), TOL32, "decoder")
    loss_c = gan_critic_oracle(c_copy, x, rec.detach())  # real vs the reconstructions (before the AE step)
    torch.testing.assert_close(out["critic_loss"], loss_c.detach(), **TOL32)
    assert_params(critic, sgd_step(before["critic"], grads(loss_c, c_copy), AE_LR_C), TOL32, "critic")
    assert not method.is_fitted


# Mutations caught: pairing term dropped; pair_weight ignored (weight 1); generator fed N(0, I) codes instead
# of the extended OT map's; adversarial term minimax instead of NS; generator loss sent to the "autoencoder"
# optimizer; the phase boundary `<` -> `<=` (no OT solve at step ae_steps).
def test_aeot_gan_phase3_gan_step(capsys):
    method = make_aeot_gan()
    ctx = RecordingContext(method.configure_optimizers(), FP32)
    enc, dec, critic = (method.nets[k] for k in ("encoder", "decoder", "critic"))
    fed: list[torch.Tensor] = []
    codes_fn = method._codes

    def recording_codes(n):  # spy on the codes the generator is fed
        c = codes_fn(n)
        fed.append(c.clone())
        return c

    method._codes = recording_codes
    real = RealBatches(AE_X)
    e_copy, d_copy, c_copy = (copy.deepcopy(n) for n in (enc, dec, critic))
    before = {k: snapshot(method.nets[k]) for k in ("encoder", "decoder", "critic")}
    ctx.step = AG_AE_STEPS  # phase 2 (the OT solve, once) then the first GAN iteration
    torch.manual_seed(31)
    out = method.train_step(real, ctx)
    assert real.sizes == [AG_CODES, AE_N], "one draw of n_codes targets for the OT solve, then the batch"
    targets, x = real.take()
    assert ctx.updates == ["critic", "generator"] and method.is_fitted
    assert len(fed) == 2 and all(c.shape == (AE_N, AE_Z) for c in fed)  # the critic's fakes, then G's batch

    # the fed codes are extended-OT-map codes: 0.25 y_i + 0.75 y_j for targets y = E(x_targets), i != j
    with torch.no_grad():
        y = e_copy(targets)
        cand = 0.25 * y[:, None, :] + 0.75 * y[None, :, :]
        cand = cand[~torch.eye(AG_CODES, dtype=torch.bool)]
        for c in fed:
            dist = (c[:, None, :] - cand[None, :, :]).norm(dim=-1)  # not cdist: its matmul path is 1e-4 off
            assert float(dist.min(1).values.max()) < 1e-5

    # critic: NS-GAN loss on real x vs G(codes) (no graph into G)
    fake = d_copy(fed[0]).detach()
    loss_c = gan_critic_oracle(c_copy, x, fake)
    torch.testing.assert_close(out["critic_loss"], loss_c.detach(), **TOL32)
    c_after = sgd_step(before["critic"], grads(loss_c, c_copy), AE_LR_C)
    assert_params(critic, c_after, TOL32, "critic")
    # generator (= decoder): -E log D'(G(codes)) against the updated critic + pair_weight * MSE(G(E(x)), x)
    with torch.no_grad():
        for p, v in zip(c_copy.parameters(), c_after):
            p.copy_(v)
    adversarial = -log_softplus_d(c_copy(d_copy(fed[1]))).mean()
    pairing = ((d_copy(e_copy(x).detach()) - x) ** 2).mean()
    torch.testing.assert_close(out["generator_loss"], adversarial.detach(), **TOL32)
    torch.testing.assert_close(out["pairing"], pairing.detach(), **TOL32)
    loss_g = adversarial + AG_PAIR * pairing
    assert_params(dec, sgd_step(before["decoder"], grads(loss_g, d_copy), AE_LR_G), TOL32, "decoder")
    assert_unchanged(enc, before["encoder"], "the frozen encoder")

    # the next GAN iteration does not solve again: one batch
    ctx.step += 1
    heights = method.ot_heights.clone()
    method.train_step(real, ctx)
    assert real.sizes == [AE_N] and torch.equal(method.ot_heights, heights)


# =========================================================================================================
# WAE-MMD and WAE-GAN (Tolstikhin et al. 2018)
# =========================================================================================================
WAE_REC = 0.05  # c(x, y) = 0.05 ||x - y||^2 (the official code's l2sq for MNIST)
IMQ_SCALES = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)


def imq_mmd_oracle(qz: torch.Tensor, pz: torch.Tensor) -> torch.Tensor:
    """The official WAE code's IMQ MMD: C = 2 d sigma_p^2 * s, within-sample terms as U-statistics."""
    n, d = qz.shape
    total = 0.0
    off = ~torch.eye(n, dtype=torch.bool)
    for s in IMQ_SCALES:
        c = 2.0 * d * 1.0 * s  # C = 2 d sigma_p^2 * scale, sigma_p = 1

        def k(a, b, c=c):
            return c / (c + ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))

        total = total + k(qz, qz)[off].sum() / (n * n - n) + k(pz, pz)[off].sum() / (n * n - n) \
            - 2.0 * k(qz, pz).sum() / (n * n)
    return total


def wae_rec(enc, dec, x):
    z = enc(x)
    return WAE_REC * ((dec(z) - x) ** 2).sum(1).mean(), z


# Mutations caught: lambda dropped (`cost + mmd`); the IMQ base 2 d -> d; V-statistic instead of U; Gaussian
# (RBF) kernel instead of IMQ; Gaussian prior replaced by U[0, 1]; reconstruction cost without the 0.05.
def test_wae_mmd_step():
    lam = 3.0
    nets = ae_nets()
    method = WAEMMD(name="wae_mmd", batch_size=AE_N, prior={"kind": "normal", "dim": AE_Z},
                    optim={"autoencoder": sgd(AE_LR)}, penalty_weight=lam, **nets)
    ctx = RecordingContext(method.configure_optimizers(), FP32)
    real = RealBatches(AE_X)
    enc, dec = method.nets["encoder"], method.nets["decoder"]
    e_copy, d_copy = copy.deepcopy(enc), copy.deepcopy(dec)
    e_before, d_before = snapshot(enc), snapshot(dec)
    torch.manual_seed(41)
    out = method.train_step(real, ctx)
    assert real.sizes == [AE_N] and ctx.updates == ["autoencoder"]
    (x,) = real.take()
    torch.manual_seed(41)
    pz = torch.randn(AE_N, AE_Z)  # P_Z = N(0, I)

    cost, z = wae_rec(e_copy, d_copy, x)
    mmd = imq_mmd_oracle(z, pz)
    torch.testing.assert_close(out["reconstruction"], cost.detach(), **TOL32)
    torch.testing.assert_close(out["mmd"], mmd.detach(), **TOL32)
    loss = cost + lam * mmd
    assert_params(enc, sgd_step(e_before, grads(loss, e_copy), AE_LR), TOL32, "encoder")
    assert_params(dec, sgd_step(d_before, grads(loss, d_copy), AE_LR), TOL32, "decoder")
    cfg = method_yaml("wae_mmd")
    assert (cfg.penalty_weight, cfg.rec_scale, cfg.prior.kind) == (10.0, 0.05, "normal")
    assert tuple(cfg.kernel_scales) == IMQ_SCALES


# Mutations caught: latent critic roles swapped (codes as "real"); encoder penalty minimax, or with the sign
# flipped; lambda dropped; the latent critic's loss sent to the autoencoder optimizer.
def test_wae_gan_step():
    lam = 2.0
    nets = ae_nets()
    torch.manual_seed(4)
    nets["latent_critic"] = mlp(AE_Z, 8, 1, flatten=True)
    method = WAEGAN(name="wae_gan", batch_size=AE_N, prior={"kind": "normal", "dim": AE_Z},
                    optim={"autoencoder": sgd(AE_LR), "latent_critic": sgd(AE_LR_C)}, penalty_weight=lam,
                    **nets)
    ctx = RecordingContext(method.configure_optimizers(), FP32)
    real = RealBatches(AE_X)
    enc, dec, crit = (method.nets[k] for k in ("encoder", "decoder", "latent_critic"))
    e_copy, d_copy, c_copy = (copy.deepcopy(n) for n in (enc, dec, crit))
    before = {k: snapshot(method.nets[k]) for k in ("encoder", "decoder", "latent_critic")}
    torch.manual_seed(51)
    out = method.train_step(real, ctx)
    assert real.sizes == [AE_N] and ctx.updates == ["latent_critic", "autoencoder"]
    (x,) = real.take()
    torch.manual_seed(51)
    pz = torch.randn(AE_N, AE_Z)

    # latent critic: prior draws are "real", codes Q(x) are "fake"
    loss_c = gan_critic_oracle(c_copy, pz, e_copy(x).detach())
    torch.testing.assert_close(out["latent_critic_loss"], loss_c.detach(), **TOL32)
    c_after = sgd_step(before["latent_critic"], grads(loss_c, c_copy), AE_LR_C)
    assert_params(crit, c_after, TOL32, "latent critic")
    with torch.no_grad():
        for p, v in zip(c_copy.parameters(), c_after):
            p.copy_(v)
    # autoencoder: cost + lambda * (-E log D'(Q(x))), against the updated latent critic
    cost, z = wae_rec(e_copy, d_copy, x)
    penalty = -log_softplus_d(c_copy(z)).mean()
    torch.testing.assert_close(out["reconstruction"], cost.detach(), **TOL32)
    torch.testing.assert_close(out["latent_penalty"], penalty.detach(), **TOL32)
    loss = cost + lam * penalty
    assert_params(enc, sgd_step(before["encoder"], grads(loss, e_copy), AE_LR), TOL32, "encoder")
    assert_params(dec, sgd_step(before["decoder"], grads(loss, d_copy), AE_LR), TOL32, "decoder")
    cfg = method_yaml("wae_gan")
    assert (cfg.penalty_weight, cfg.rec_scale, cfg.prior.kind) == (1.0, 0.05, "normal")
