"""Sampler tests against closed forms (METHODS.md §10 DRS, §11 DOT; MH-GAN independence sampler).

Methods are tiny fakes with the public surface samplers use (prior/prior_kind/generate/critic/...), so the
expected numbers come from the toy's analytic densities, never from the code under test.
"""

from __future__ import annotations

import math

import pytest
import torch
from scipy import integrate, stats
from torch import Tensor, nn

from otgan_lab.samplers.base import draw_latents
from otgan_lab.samplers.calibration import calibrate_critic, fit_platt
from otgan_lab.samplers.dot import DOTSampler, dot_latent, dot_target, estimate_k_eff, transport_objective
from otgan_lab.samplers.drs import DRSSampler, drs_score
from otgan_lab.samplers.mh import MHSampler
from otgan_lab.samplers.standard import StandardSampler

# ----------------------------------------------------------------------------------------------------------
# Fakes


class UniformToBeta(nn.Module):
    """p_g = U[0, 1] (uniform prior on [−1, 1] mapped by (z + 1)/2); p_d = Beta(2, 1) = 2x on [0, 1].

    The exact logit is D̃*(x) = log p_d/p_g = log 2x, so M = 2. ``critic_module`` is a learnable
    w·log x + b (exact at w = 1, b = log 2). ``wgan`` turns the critic into c = (log 2x − 1)/3, not a logit.
    """

    prior_kind = "uniform"
    has_critic = True

    def __init__(self, w: float = 1.0, b: float = math.log(2.0), wgan: bool = False) -> None:
        super().__init__()
        self.critic_module = LogFeatureCritic(w, b)
        self.critic_is_logit = not wgan
        self.wgan = wgan

    def prior(self, n: int) -> Tensor:
        return torch.rand(n, 1, dtype=torch.float64) * 2 - 1

    def generate(self, z: Tensor) -> Tensor:
        return (z + 1) / 2

    def critic(self, x: Tensor) -> Tensor:
        logit = self.critic_module(x)
        return (logit - 1) / 3 if self.wgan else logit


class LogFeatureCritic(nn.Module):
    def __init__(self, w: float, b: float) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.tensor(w, dtype=torch.float64))
        self.b = nn.Parameter(torch.tensor(b, dtype=torch.float64))

    def forward(self, x: Tensor) -> Tensor:
        return self.w * torch.log(x.reshape(-1)) + self.b


class LinearMethod(nn.Module):
    """G(z) = A z, D(x) = w·x (+ c); records the training flag seen by generate/critic."""

    has_critic = True
    critic_is_logit = False

    def __init__(self, a: Tensor, w: Tensor, prior_kind: str = "normal") -> None:
        super().__init__()
        self.prior_kind = prior_kind
        self.generator_net = nn.Linear(a.shape[1], a.shape[0], bias=False, dtype=torch.float64)
        self.critic_module = nn.Linear(a.shape[0], 1, dtype=torch.float64)
        with torch.no_grad():
            self.generator_net.weight.copy_(a)
            self.critic_module.weight.copy_(w.reshape(1, -1))
            self.critic_module.bias.fill_(0.25)
        self.seen_training: list[bool] = []

    def prior(self, n: int) -> Tensor:
        d = self.generator_net.in_features
        if self.prior_kind == "uniform":
            return torch.rand(n, d, dtype=torch.float64) * 2 - 1
        return torch.randn(n, d, dtype=torch.float64)

    def generate(self, z: Tensor) -> Tensor:
        self.seen_training.append(self.training)
        return self.generator_net(z)

    def critic(self, x: Tensor) -> Tensor:
        self.seen_training.append(self.training)
        return self.critic_module(x).reshape(-1)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ----------------------------------------------------------------------------------------------------------
# Standard sampler and shared helpers


def test_standard_sampler_exact_count_batches_and_reproducible():
    method = UniformToBeta()
    sampler = StandardSampler(batch_size=64)
    x1 = sampler.sample(method, 1000, generator=gen(3))
    x2 = sampler.sample(method, 1000, generator=gen(3))
    assert x1.shape == (1000, 1) and torch.equal(x1, x2)
    assert float(x1.min()) >= 0.0 and float(x1.max()) <= 1.0  # U[-1, 1] prior mapped onto [0, 1]
    assert abs(float(x1.mean()) - 0.5) < 0.03  # mean of U[0, 1], std of the mean ≈ 0.009
    assert sampler.sample(method, 0).shape == (0, 1)


def test_draw_latents_follows_prior_kind():
    method = LinearMethod(torch.eye(3), torch.ones(3), prior_kind="uniform")
    z = draw_latents(method, 20000, gen(0))
    assert z.shape == (20000, 3) and float(z.abs().max()) <= 1.0
    assert abs(float(z.var()) - 1 / 3) < 0.01  # Var U[-1, 1] = 1/3
    method.prior_kind = "normal"
    assert abs(float(draw_latents(method, 20000, gen(0)).var()) - 1.0) < 0.03


def test_sampling_runs_in_eval_mode_and_restores_flags():
    method = LinearMethod(torch.eye(2), torch.ones(2))
    method.train()
    method.critic_module.eval()  # a submodule kept in eval must stay so afterwards
    DOTSampler(space="latent", steps=2, k_pairs=20).sample(method, 10, generator=gen(0))
    assert method.seen_training and not any(method.seen_training)
    assert method.training and method.generator_net.training and not method.critic_module.training


# ----------------------------------------------------------------------------------------------------------
# DRS (METHODS.md §10)


def drs_accept_prob(logits: Tensor, max_logit: float, gamma: float, eps: float) -> Tensor:
    """The DRS acceptance rule σ(F − γ) (Azadi et al. 2019) applied to the code's score F."""
    return torch.sigmoid(drs_score(logits, max_logit, eps) - gamma)


def test_drs_identity_at_gamma_zero():
    delta = -torch.logspace(-9, math.log10(30.0), 2000, dtype=torch.float64)  # Δ = l − D̃_M ∈ [−30, −1e-9]
    # ε → 0: σ(F) → e^Δ, the ideal acceptance exp(D̃ − D̃_M)
    p = drs_accept_prob(delta, 0.0, 0.0, eps=1e-12)
    assert float((p - delta.exp()).abs().max()) < 1e-10
    # at the default ε the exact closed form is σ(F) = e^Δ / (1 + e^Δ − e^(Δ−ε))
    eps = 1e-6
    p = drs_accept_prob(delta + 3.0, 3.0, 0.0, eps=eps)
    exact = delta.exp() / (1 + delta.exp() - (delta - eps).exp())
    assert float(((p - exact) / exact).abs().max()) < 1e-9
    assert float((p - delta.exp()).abs().max()) < 2e-6


def test_drs_acceptance_monotone_in_logit():
    logits = torch.linspace(-20.0, 4.0, 5001, dtype=torch.float64)
    p = drs_accept_prob(logits, 4.0, gamma=1.3, eps=1e-6)
    assert bool((p.diff() > 0).all())


def test_drs_score_refuses_logits_above_max():
    with pytest.raises(ValueError, match="max_logit"):
        drs_score(torch.tensor([0.5, 1.0]), 0.9)


def test_drs_exact_toy_gamma_zero():
    """p_g = U[0, 1], p_d = Beta(2, 1): rejection sampling accepts 1/M = 1/2 and returns Beta(2, 1)."""
    sampler = DRSSampler(burn_in=10000, percentile=None, batch_size=2000)
    x = sampler.sample(UniformToBeta(), 20000, generator=gen(0)).reshape(-1)
    assert x.shape == (20000,)
    assert abs(sampler.stats["acceptance_rate"] - 0.5) < 0.015  # binomial std ≈ 0.0025
    assert abs(float(x.mean()) - 2 / 3) < 0.01  # Beta(2, 1) mean; std of the mean ≈ 0.0017
    assert stats.kstest(x.numpy(), lambda t: t**2).pvalue > 1e-3  # Beta(2, 1) CDF is x²
    assert abs(sampler.stats["max_logit"] - math.log(2.0)) < 1e-3
    rate = sampler.stats["acceptance_rate"]
    assert sampler.stats["draws_per_accepted"] == pytest.approx(1 / rate, rel=0.01)


def test_drs_exact_toy_gamma_at_95th_percentile():
    """γ = batch 95th percentile of F = logit(0.95): acceptance x/(x + 19(1 − x)) on U[0, 1] (F = logit x)."""
    def accept(t: float) -> float:
        return t / (t + 19 * (1 - t))

    rate = integrate.quad(accept, 0, 1)[0]  # = 19 ln 19 / 324 − 1/18 ≈ 0.1171
    mean = integrate.quad(lambda t: t * accept(t), 0, 1)[0] / rate
    assert rate == pytest.approx(19 * math.log(19) / 324 - 1 / 18)
    sampler = DRSSampler(burn_in=10000, percentile=95, batch_size=2000)
    x = sampler.sample(UniformToBeta(), 5000, generator=gen(1))
    assert abs(sampler.stats["acceptance_rate"] - rate) < 0.01
    assert abs(float(x.mean()) - mean) < 0.01
    assert float(x.mean()) > 2 / 3 + 0.1  # biased toward high D, as METHODS.md §10 expects


class DriftingCritic(UniformToBeta):
    """Logits that grow with every call, so later batches exceed the burn-in max."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0
        self.seen_max = -math.inf

    def critic(self, x: Tensor) -> Tensor:
        self.calls += 1
        logits = super().critic(x) + 0.05 * self.calls
        self.seen_max = max(self.seen_max, float(logits.max()))
        return logits


def test_drs_max_logit_never_decreases_and_exact_count():
    method = DriftingCritic()
    sampler = DRSSampler(burn_in=500, percentile=80, batch_size=100)
    x = sampler.sample(method, 777, generator=gen(2))  # not a multiple of the batch size
    assert x.shape == (777, 1)
    trace = torch.tensor(sampler.max_logit_trace)
    assert len(trace) > 5 and bool((trace.diff() >= 0).all()) and float(trace[-1] - trace[0]) > 0.1
    # raised before computing acceptances: the last value is the largest logit ever seen
    assert sampler.stats["max_logit"] == pytest.approx(method.seen_max)


def test_drs_refuses_wgan_critic_without_calibration():
    with pytest.raises(ValueError, match="critic_is_logit=False"):
        DRSSampler(burn_in=10).sample(UniformToBeta(wgan=True), 10)
    with pytest.raises(RuntimeError, match="fit"):
        DRSSampler(burn_in=10, calibrate_steps=5).sample(UniformToBeta(), 10)
    with pytest.raises(RuntimeError, match="max_draws"):
        DRSSampler(burn_in=10, batch_size=10, max_draws=50, percentile=100).sample(UniformToBeta(), 1000)


def beta21(n: int, seed: int) -> Tensor:
    """Real data for the toy: Beta(2, 1) by inverse CDF (√U)."""
    return torch.rand(n, 1, dtype=torch.float64, generator=gen(seed)).sqrt()


def test_fit_platt_recovers_logistic_model():
    # scores s with s|real ~ N(1, 1), s|fake ~ N(−1, 1): log p_real(s)/p_fake(s) = 2s exactly
    g = gen(4)
    s_real = torch.randn(40000, generator=g, dtype=torch.float64) + 1
    s_fake = torch.randn(40000, generator=g, dtype=torch.float64) - 1
    a, b = fit_platt(100 * s_real + 7, 100 * s_fake + 7)  # arbitrary critic scale: a = 2/100, b = −0.14
    assert a == pytest.approx(0.02, rel=0.05) and b == pytest.approx(-0.14, abs=0.03)


def test_drs_platt_calibrates_wgan_critic():
    """c = (log 2x − 1)/3, so Platt scaling must find a·c + b = log 2x: a = 3, b = 1."""
    method = UniformToBeta(wgan=True)
    sampler = DRSSampler(burn_in=5000, percentile=None, batch_size=1000, calibrate_steps=40)
    assert sampler.needs_real_data
    sampler.calibrate(method, beta21(50000, 5), generator=gen(6))
    assert sampler.calibration.stats()["platt_a"] == pytest.approx(3.0, abs=0.2)
    assert sampler.calibration.stats()["platt_b"] == pytest.approx(1.0, abs=0.15)
    x = sampler.sample(method, 5000, generator=gen(7))
    assert abs(float(x.mean()) - 2 / 3) < 0.015


def test_finetune_calibration_on_a_copy_reaches_the_true_logit():
    method = UniformToBeta(w=0.3, b=0.0)  # a poor logit; the optimum of BCE is w = 1, b = log 2
    real = beta21(50000, 8)
    calibrated = calibrate_critic(method, real, steps=150, mode="finetune", lr=0.05, batch_size=512,
                                  generator=gen(9))
    tuned = calibrated.module
    assert float(tuned.w) == pytest.approx(1.0, abs=0.15)
    assert float(tuned.b) == pytest.approx(math.log(2.0), abs=0.15)
    assert method.critic_module.w.item() == 0.3 and method.critic_module.b.item() == 0.0  # untouched
    assert method.critic_module.w.grad is None


def test_finetune_calibration_refuses_mismatched_module():
    method = UniformToBeta(wgan=True)  # critic(x) = (module(x) − 1)/3 ≠ module(x)
    with pytest.raises(ValueError, match="differs"):
        calibrate_critic(method, beta21(100, 0), steps=1, mode="finetune")


# ----------------------------------------------------------------------------------------------------------
# DOT (METHODS.md §11)


def test_k_eff_linear_critic_bounded_by_and_approaches_norm_w():
    w = torch.tensor([3.0, -4.0], dtype=torch.float64)  # ‖w‖ = 5

    def critic(x: Tensor) -> Tensor:
        return x @ w

    points = torch.randn(500, 2, dtype=torch.float64, generator=gen(10))
    few = estimate_k_eff(critic, points, n_pairs=5, n_repeats=3, generator=gen(11))
    many = estimate_k_eff(critic, points, n_pairs=20000, generator=gen(12))
    assert 0 < few <= 5.0 + 1e-9 and many <= 5.0 + 1e-9
    assert many >= 0.999 * 5.0


def test_latent_k_eff_bounded_by_norm_of_a_transpose_w():
    a = torch.tensor([[1.0, 2.0, 0.0, -1.0], [0.5, 0.0, 1.0, 1.0], [0.0, -1.0, 2.0, 0.0]],
                     dtype=torch.float64)
    w = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    bound = float((a.T @ w).norm())  # D(G(z)) = (Aᵀw)·z
    method = LinearMethod(a, w)
    sampler = DOTSampler(space="latent", steps=1, k_pairs=2000)
    sampler.sample(method, 4, generator=gen(13))
    assert 0.95 * bound <= sampler.stats["k_eff"] <= bound + 1e-9
    target = DOTSampler(space="target", steps=1, k_pairs=2000)
    target.sample(method, 4, generator=gen(13))
    assert target.stats["k_eff"] <= float(w.norm()) + 1e-9


def test_dot_never_increases_objective_with_small_lr_gd():
    torch.manual_seed(0)
    critic_net = nn.Sequential(nn.Linear(2, 32), nn.Tanh(), nn.Linear(32, 1)).double()

    def critic(x: Tensor) -> Tensor:
        return critic_net(x).reshape(-1)

    y = torch.randn(256, 2, dtype=torch.float64, generator=gen(14)) * 2
    k = estimate_k_eff(critic, torch.randn(400, 2, dtype=torch.float64, generator=gen(15)) * 2, 100)
    delta = 1e-3
    x = dot_target(y, critic, k, steps=200, lr=1e-4, delta=delta, optimizer="sgd")
    with torch.no_grad():
        h_start = transport_objective(y, y, critic(y), k, delta)
        h_end = transport_objective(x, y, critic(x), k, delta)
        norm_delta = delta * math.sqrt(2)
        assert bool((h_end <= h_start + 1e-12).all())
        # the same statement on D: D(x_N) − D(y) ≥ K(‖x_N − y + δ‖ − ‖δ‖)
        gain = critic(x) - critic(y)
        assert bool((gain >= k * ((x - y + delta).norm(dim=1) - norm_delta) - 1e-10).all())
    assert float((x - y).norm(dim=1).max()) > 1e-3  # it did move


def test_dot_concave_critic_moves_toward_the_peak():
    """D = −½‖x − x0‖², y = x0 + 10u: on the ray, H = 10 − t + t²/(2K), minimised at t = K (x* = x0 + K u)."""
    x0 = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    u = torch.tensor([2.0, 1.0, -2.0], dtype=torch.float64) / 3.0  # unit vector
    y = (x0 + 10 * u).reshape(1, 3)
    k, delta = 2.0, 1e-3

    def critic(x: Tensor) -> Tensor:
        return -0.5 * ((x - x0) ** 2).sum(1)

    x = dot_target(y, critic, k, steps=500, lr=0.05, delta=delta)  # Adam(β = (0, 0.9)), as in the paper code
    gain = float(critic(x) - critic(y))
    assert gain > 0 and float((x - x0).norm()) < 10 - 5
    assert float((x - y).norm()) <= gain / k + 2 * delta * math.sqrt(3)
    assert float((x[0] - (x0 + k * u)).norm()) < 0.2


def test_dot_constant_critic_stays_within_delta():
    """With constant D, H = ‖x − (y − δ)‖: GD steps of length lr keep x within max(‖δ‖, lr) of y − δ."""
    d, lr, delta = 16, 1e-3, 1e-3
    y = torch.randn(32, d, dtype=torch.float64, generator=gen(16))

    def critic(x: Tensor) -> Tensor:
        return 0.0 * x.sum(1) + 1.7

    x = dot_target(y, critic, 1.0, steps=100, lr=lr, delta=delta, optimizer="sgd")
    norm_delta = delta * math.sqrt(d)
    assert float((x - y).norm(dim=1).max()) <= norm_delta + max(norm_delta, lr) + 1e-9
    with pytest.raises(ValueError, match="K_eff"):
        DOTSampler(space="target").sample(ConstantCriticMethod(), 5)


class ConstantCriticMethod(LinearMethod):
    def __init__(self) -> None:
        super().__init__(torch.eye(2), torch.zeros(2))


def test_dot_latent_uniform_prior_clips_to_box():
    w = torch.tensor([50.0, -50.0, 50.0], dtype=torch.float64)  # pushes every z out of the box
    z_y = torch.rand(64, 3, dtype=torch.float64, generator=gen(17)) * 2 - 1
    z = dot_latent(z_y, lambda zz: zz @ w, k_eff=1.0, steps=20, lr=0.5, prior_kind="uniform")
    assert float(z.abs().max()) <= 1.0
    assert bool((z == torch.sign(w)).all())  # pinned at the corner in w's direction
    method = LinearMethod(torch.eye(3), w, prior_kind="uniform")
    x = DOTSampler(space="latent", steps=20, lr=0.5).sample(method, 50, generator=gen(18))
    assert float(x.abs().max()) <= 1.0 + 1e-12  # G = identity, so x = z stays in the box


def test_dot_latent_normal_prior_radial_correction_one_step():
    """One SGD step from z_y with D(G(z)) = v·z: grad = 1/√d − v/k, minus z (z·grad)/√d (official code)."""
    d, k, lr, delta = 5, 2.0, 0.1, 1e-3
    v = torch.tensor([1.0, -0.5, 2.0, 0.0, 1.5], dtype=torch.float64)
    z_y = torch.randn(8, d, dtype=torch.float64, generator=gen(19))
    z1 = dot_latent(z_y, lambda zz: zz @ v, k, steps=1, lr=lr, prior_kind="normal", delta=delta)
    g = torch.full((d,), 1 / math.sqrt(d), dtype=torch.float64) - v / k  # ∇‖δ·1‖ = 1/√d per coordinate
    g_official = g - z_y * (z_y @ g).unsqueeze(1) / math.sqrt(d)
    assert torch.allclose(z1, z_y - lr * g_official, atol=1e-12)
    # the exact tangent projection: the first step is orthogonal to z_y
    z1 = dot_latent(z_y, lambda zz: zz @ v, k, steps=1, lr=lr, prior_kind="normal", delta=delta,
                    radial="project")
    assert float(((z1 - z_y) * z_y).sum(1).abs().max()) < 1e-12
    assert float((z1 - z_y).norm(dim=1).min()) > 1e-3


@pytest.mark.parametrize("space", ["latent", "target"])
def test_dot_leaves_critic_and_generator_unchanged(space: str):
    a = torch.randn(3, 4, dtype=torch.float64, generator=gen(20))
    method = LinearMethod(a, torch.tensor([1.0, 2.0, -1.0], dtype=torch.float64))
    before = {name: p.detach().clone() for name, p in method.named_parameters()}
    sampler = DOTSampler(space=space, steps=5)
    with torch.no_grad():  # an evaluation loop may sample under no_grad; DOT must still optimise
        x = sampler.sample(method, 30, generator=gen(21))
    assert x.shape == (30, 3)
    for name, p in method.named_parameters():
        assert torch.equal(p, before[name]) and p.grad is None
    if space == "target":  # a linear critic gains along its gradient (the latent "official" correction
        assert sampler.stats["mean_critic_gain"] > 0  # reverses radial motion, so no sign is promised there)


# ----------------------------------------------------------------------------------------------------------
# MH-GAN independence sampler

P_G = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64)
R = torch.tensor([3.0, 1.0, 0.5, 1.2], dtype=torch.float64)
P_D = P_G * R / (P_G * R).sum()  # the independence sampler's target p_d ∝ p_g·r


class CategoricalMethod:
    """p_g = P_G on the categories 0..3 (inverse CDF of a U[−1, 1] latent); logit log r(x) = log R[x]."""

    prior_kind = "uniform"
    has_critic = True
    critic_is_logit = True

    def prior(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        return torch.rand(n, 1, dtype=torch.float64, generator=generator) * 2 - 1

    def generate(self, z: Tensor) -> Tensor:
        u = ((z + 1) / 2).reshape(-1)
        return torch.searchsorted(P_G.cumsum(0), u, right=True).clamp(max=3).to(torch.float64).reshape(-1, 1)

    def critic(self, x: Tensor) -> Tensor:
        return R.log()[x.reshape(-1).long()]


def mh_kernel() -> tuple[Tensor, Tensor]:
    """The independence-MH transition matrix T[i, j] = p_g(j) min(1, r_j/r_i) (j ≠ i) and the chance A[i]
    that a proposal is accepted from state i (a proposal equal to the state counts as accepted)."""
    moves = P_G[None, :] * (R[None, :] / R[:, None]).clamp(max=1)
    kernel = moves.clone()
    kernel.diagonal().zero_()
    kernel.diagonal().copy_(1 - kernel.sum(1))
    return kernel, moves.sum(1)


@pytest.mark.parametrize("steps", [1, 5, 40])
def test_mh_sampler_follows_the_chain_law_on_categories(steps: int):
    """From a p_g start, k MH steps give the law p_g T^k exactly; it tends to p_d, which T leaves
    invariant."""
    kernel, accept = mh_kernel()
    assert torch.allclose(P_D @ kernel, P_D, atol=1e-15)  # the oracle's own detailed balance
    law, rate = P_G.clone(), 0.0
    for _ in range(steps):
        rate += float(law @ accept) / steps
        law = law @ kernel
    chains = 40000
    sampler = MHSampler(chain_length=steps, batch_size=chains)
    x = sampler.sample(CategoricalMethod(), chains, generator=gen(22)).reshape(-1).long()
    freq = torch.bincount(x, minlength=4).double() / chains
    assert float((freq - law).abs().max()) < 0.01  # binomial std ≤ 0.0025
    assert abs(sampler.stats["acceptance_rate"] - rate) < 0.01
    if steps == 40:
        assert float((law - P_D).abs().max()) < 1e-6  # the chain has converged to p_d


def test_mh_sampler_exact_toy():
    """U[0, 1] proposals with r = 2x: the chain targets Beta(2, 1); p_g/p_d ≥ 1/2 so it mixes in ~10 steps."""
    sampler = MHSampler(chain_length=40, batch_size=1500)
    x = sampler.sample(UniformToBeta(), 4000, generator=gen(26)).reshape(-1)
    assert x.shape == (4000,)
    assert abs(float(x.mean()) - 2 / 3) < 0.015
    assert stats.kstest(x.numpy(), lambda t: t**2).pvalue > 1e-3
    # stationary acceptance: E[min(1, x'/x)], x ~ Beta(2, 1), x' ~ U[0, 1] = ∫∫ 2x·min(1, x'/x) = 2/3
    assert abs(sampler.stats["acceptance_rate"] - 2 / 3) < 0.02
    assert sampler.stats["never_moved"] < 1e-3


def test_mh_refuses_wgan_critic_without_calibration():
    with pytest.raises(ValueError, match="critic_is_logit=False"):
        MHSampler(chain_length=2).sample(UniformToBeta(wgan=True), 10)


class CodeBookMethod(nn.Module):
    """A method whose prior is its own code distribution (like AE-OT's OT map): draws from a codebook."""

    prior_kind = "normal"  # declared, but the codes are not N(0, I): draw_latents must use prior()
    can_reconstruct = True  # declared capability: sampler=reconstruction accepts it

    def __init__(self) -> None:
        super().__init__()
        self.book = torch.tensor([[5.0, 5.0], [-5.0, 5.0]])

    @property
    def device(self) -> torch.device:
        return self.book.device

    def prior(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        return self.book[torch.randint(2, (n,), generator=generator)]

    def generate(self, z: Tensor) -> Tensor:
        return z

    def reconstruct(self, x: Tensor) -> Tensor:
        return 2 * x  # a known map: the sampler must return reconstruct(real) and nothing else


def test_draw_latents_uses_the_methods_own_prior_when_it_takes_a_generator():
    method = CodeBookMethod()
    z = draw_latents(method, 1000, gen(0))
    assert set(map(tuple, z.tolist())) <= {(5.0, 5.0), (-5.0, 5.0)}  # never N(0, I) redraws
    assert torch.equal(z, draw_latents(method, 1000, gen(0)))  # reproducible from the generator
    x = StandardSampler(batch_size=300).sample(method, 1000, generator=gen(0))
    assert torch.equal(x, z)


def test_reconstruction_sampler_returns_reconstructions_of_real_data():
    from otgan_lab.samplers.reconstruction import ReconstructionSampler

    real = torch.arange(40, dtype=torch.float32).reshape(20, 2)
    sampler = ReconstructionSampler(batch_size=7)
    assert sampler.needs_real_data
    with pytest.raises(RuntimeError, match="fit"):
        sampler.sample(CodeBookMethod(), 5)
    sampler.fit(CodeBookMethod(), real)
    x = sampler.sample(CodeBookMethod(), 50, generator=gen(1))
    assert x.shape == (50, 2)
    rows = {tuple(r) for r in (2 * real).tolist()}
    assert all(tuple(r) in rows for r in x.tolist())  # each output is 2 * a real row
    assert len({tuple(r) for r in x.tolist()}) > 5  # drawn across the data, not one batch repeated
    with pytest.raises(TypeError, match="autoencoder"):
        sampler.fit(UniformToBeta(), real)

