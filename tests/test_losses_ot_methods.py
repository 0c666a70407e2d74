"""Numeric tests for the UOTM, MD-GAN and unrolled-GAN loss helpers (METHODS.md §5, §7, §8, §13).

Every expected value comes from an oracle independent of the code under test: closed forms, POT, scipy,
or torch.optim.Adam/SGD themselves.
"""

from __future__ import annotations

import math

import numpy as np
import ot
import pytest
import scipy.optimize
import scipy.special
import scipy.stats
import torch
import torch.nn.functional as F

from otgan_lab.losses.mdgan import (
    mdgan_discriminator_loss,
    mdgan_generator_loss,
    mdgan_logit,
    sgmm_log_likelihood,
    sgmm_log_max,
    simplex_vertices,
)
from otgan_lab.losses.unrolled import (
    adam_state_from_optimizer,
    differentiable_adam_step,
    differentiable_sgd_step,
)
from otgan_lab.losses.uot import (
    PSI_STAR_NAMES,
    psi_star,
    transport_cost,
    uot_potential_loss,
    uot_transport_loss,
)

DT = torch.float64


# ----------------------------------------------------------------------------------------------------
# UOTM
# ----------------------------------------------------------------------------------------------------


def _gen_kl(p: np.ndarray, q: np.ndarray) -> float:
    return float(np.sum(p * np.log(p / q) - p + q))


def test_uot_semi_dual_equals_minus_primal():
    """min_v semi-dual (the UOTM potential loss, Ψ* = e^t − 1) = −min_π <C,π> + KL(π1|a) + KL(πᵀ1|b)."""
    x = np.array([-1.0, -0.2, 0.5, 1.3])
    y = np.array([-1.5, -0.6, 0.1, 0.9, 2.0])
    tau = 0.7
    # Non-uniform weights through repeated samples, since the losses are batch means.
    x_idx = np.array([0, 0, 1, 2, 3])  # a = (2, 1, 1, 1)/5
    y_idx = np.array([0, 0, 1, 2, 3, 3, 4, 4])  # b = (2, 1, 1, 2, 2)/8
    a = np.bincount(x_idx, minlength=4) / len(x_idx)
    b = np.bincount(y_idx, minlength=5) / len(y_idx)
    cost = tau * (x[:, None] - y[None, :]) ** 2

    # Oracle: the primal, solved by POT's majorisation-minimisation with no entropy.
    plan = ot.unbalanced.mm_unbalanced(a, b, cost, reg_m=1.0, div="kl", numItermax=100000, stopThr=1e-15)
    primal = float((cost * plan).sum()) + _gen_kl(plan.sum(1), a) + _gen_kl(plan.sum(0), b)

    xs = torch.tensor(x[x_idx], dtype=DT)
    ys = torch.tensor(y, dtype=DT)
    n, m = len(xs), len(ys)
    cost_t = transport_cost(
        xs[:, None].expand(n, m).reshape(-1, 1), ys[None, :].expand(n, m).reshape(-1, 1), tau
    ).view(n, m)
    y_idx_t = torch.tensor(y_idx)

    def semi_dual(v_np: np.ndarray) -> tuple[float, np.ndarray]:
        v = torch.tensor(v_np, dtype=DT, requires_grad=True)
        # T(x) = argmin_y c(x, y) − v(y) over ν's support: the exact inner minimum.
        j = (cost_t - v[None, :]).argmin(dim=1)
        v_fake = v[j]
        cost_fake = cost_t[torch.arange(n), j]
        loss, _ = uot_potential_loss(v[y_idx_t], v_fake, cost_fake, "exp_shifted", "exp_shifted")
        loss.backward()
        return loss.item(), v.grad.numpy().copy()

    res = scipy.optimize.minimize(semi_dual, np.zeros(m), jac=True, method="L-BFGS-B",
                                  options={"ftol": 1e-15, "gtol": 1e-12})
    # v^c is piecewise smooth; a derivative-free polish removes L-BFGS's stall at the kinks.
    res = scipy.optimize.minimize(lambda v: semi_dual(v)[0], res.x, method="Nelder-Mead",
                                  options={"xatol": 1e-12, "fatol": 1e-15, "maxiter": 20000})
    assert -res.fun == pytest.approx(primal, abs=1e-6)
    assert primal > 0.05  # a non-trivial problem

    # Marginal identities at the optimum: (π1)/a = e^{−v^c}, (πᵀ1)/b = e^{−v}.
    v = res.x
    v_c = (cost - v[None, :]).min(axis=1)
    np.testing.assert_allclose(plan.sum(1) / a, np.exp(-v_c), atol=1e-3)
    np.testing.assert_allclose(plan.sum(0) / b, np.exp(-v), atol=1e-3)


def _chi_oracle(t: float) -> float:
    y = max(t + 2.0, 0.0) - 2.0
    return 0.25 * y * y + y


_PSI_ORACLES = {
    "softplus": lambda t: math.log1p(math.exp(t)),
    "exp": math.exp,
    "softplus_shifted": lambda t: 2.0 * math.log1p(math.exp(t)) - 2.0 * math.log(2.0),
    "exp_shifted": math.expm1,
    "chi": _chi_oracle,
    "linear": lambda t: t,
}


@pytest.mark.parametrize("name", PSI_STAR_NAMES)
def test_psi_star_closed_forms(name):
    t = torch.linspace(-6.0, 6.0, 121, dtype=DT)
    expected = torch.tensor([_PSI_ORACLES[name](float(s)) for s in t], dtype=DT)
    torch.testing.assert_close(psi_star(name)(t), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", PSI_STAR_NAMES)
def test_psi_star_convex_and_non_decreasing(name):
    # The grid runs past the exp guard (30) to check that the continuation keeps both properties.
    t = torch.linspace(-10.0, 40.0, 5001, dtype=DT)
    values = psi_star(name)(t)
    scale = values.abs().max().clamp_min(1.0)
    first = values[1:] - values[:-1]
    second = values[2:] - 2 * values[1:-1] + values[:-2]
    assert (first >= -1e-13 * scale).all()
    assert (second >= -1e-12 * scale).all()


@pytest.mark.parametrize("name", ["softplus_shifted", "exp_shifted", "chi"])
def test_shifted_psi_star_zero_and_unit_slope(name):
    t = torch.zeros((), dtype=DT, requires_grad=True)
    value = psi_star(name)(t)
    (slope,) = torch.autograd.grad(value, t)
    assert value.item() == pytest.approx(0.0, abs=1e-15)
    assert slope.item() == pytest.approx(1.0, abs=1e-12)


def test_linear_psi_reduces_to_otm_loss():
    gen = torch.Generator().manual_seed(0)
    v_real = torch.randn(7, generator=gen, dtype=DT)
    v_fake = torch.randn(5, generator=gen, dtype=DT)
    cost = torch.rand(5, generator=gen, dtype=DT)
    loss, max_arg = uot_potential_loss(v_real, v_fake, cost, "linear", "linear")
    # Ψ* = id: E[−v(y)] + E[v(T) − c]  =  E v(T) − E v(y) − E c   (c already includes τ).
    expected = v_fake.numpy().mean() - v_real.numpy().mean() - cost.numpy().mean()
    assert loss.item() == pytest.approx(expected, abs=1e-14)
    assert max_arg.item() == pytest.approx(float(np.max(v_fake.numpy() - cost.numpy())), abs=1e-14)
    # Callables are accepted in place of names.
    loss_callable, _ = uot_potential_loss(v_real, v_fake, cost, lambda s: s, lambda s: s)
    assert loss_callable.item() == pytest.approx(expected, abs=1e-14)


def test_transport_cost_and_transport_loss_closed_form():
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(3, 2, 4, 4, generator=gen, dtype=DT)
    y = torch.randn(3, 2, 4, 4, generator=gen, dtype=DT)
    tau = 0.003
    expected = tau * ((y.numpy() - x.numpy()) ** 2).sum(axis=(1, 2, 3))
    np.testing.assert_allclose(transport_cost(x, y, tau).numpy(), expected, rtol=1e-13)
    # No ½: one pixel off by 1 costs exactly τ.
    z = torch.zeros(1, 1, 2, 2, dtype=DT)
    one = z.clone()
    one[0, 0, 1, 0] = 1.0
    assert transport_cost(z, one, tau).item() == pytest.approx(tau, rel=1e-15)
    with pytest.raises(ValueError):
        transport_cost(x, y[:, :1], tau)

    v_fake = torch.randn(3, generator=gen, dtype=DT, requires_grad=True)
    cost = torch.tensor(expected)
    loss = uot_transport_loss(v_fake, cost)
    assert loss.item() == pytest.approx(float(np.mean(expected - v_fake.detach().numpy())), abs=1e-14)
    (grad,) = torch.autograd.grad(loss, v_fake)
    torch.testing.assert_close(grad, torch.full((3,), -1.0 / 3.0, dtype=DT))  # T raises v(T)


@pytest.mark.parametrize("name", ["exp", "exp_shifted"])
def test_exp_guard_finite_at_huge_arguments(name):
    psi = psi_star(name)
    shift = 1.0 if name == "exp_shifted" else 0.0
    t = torch.tensor([1e4, 1e20, 31.0, 30.0, 29.0], dtype=torch.float32, requires_grad=True)
    values = psi(t)
    (grad,) = torch.autograd.grad(values.sum(), t)
    assert torch.isfinite(values).all() and torch.isfinite(grad).all()
    # Below the cap: exactly exp; above it: the tangent line, slope exp(30) (C¹ at the cap).
    assert values[4].item() + shift == pytest.approx(math.exp(29.0), rel=1e-6)
    assert values[2].item() + shift == pytest.approx(2.0 * math.exp(30.0), rel=1e-6)
    np.testing.assert_allclose(grad[:4].numpy(), math.exp(30.0), rtol=1e-6)
    assert grad[4].item() == pytest.approx(math.exp(29.0), rel=1e-6)
    # The cap is configurable.
    assert psi_star(name, max_arg=5.0)(torch.tensor(10.0, dtype=DT)).item() + shift == pytest.approx(
        6.0 * math.exp(5.0), rel=1e-12
    )

    # Through the potential loss, with a critic that wildly over-scores the fakes.
    v_fake = torch.tensor([500.0, 2.0], requires_grad=True)
    v_real = torch.tensor([0.1, -0.3], requires_grad=True)
    loss, max_arg = uot_potential_loss(v_real, v_fake, torch.tensor([1.0, 1.0]), psi, psi)
    grads = torch.autograd.grad(loss, (v_real, v_fake))
    assert torch.isfinite(loss) and all(torch.isfinite(g).all() for g in grads)
    assert max_arg.item() == pytest.approx(499.0)


# ----------------------------------------------------------------------------------------------------
# MD-GAN
# ----------------------------------------------------------------------------------------------------


def _check_regular_simplex(verts: torch.Tensor, d: int, norm: float) -> None:
    assert verts.shape == (d + 1, d)
    norms = verts.norm(dim=1)
    torch.testing.assert_close(norms, torch.full_like(norms, norm), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(verts.mean(dim=0), torch.zeros(d, dtype=verts.dtype), rtol=0, atol=1e-12)
    cosine = (verts @ verts.T) / norm**2
    off_diag = cosine[~torch.eye(d + 1, dtype=torch.bool)]
    torch.testing.assert_close(off_diag, torch.full_like(off_diag, -1.0 / d), rtol=0, atol=1e-12)
    dist = torch.cdist(verts, verts)[~torch.eye(d + 1, dtype=torch.bool)]
    edge = norm * math.sqrt(2.0 * (1.0 + 1.0 / d))  # closed form for a regular simplex inscribed in radius r
    torch.testing.assert_close(dist, torch.full_like(dist, edge), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("d", [1, 2, 3, 9, 16])
@pytest.mark.parametrize("scale", [1.0, 2.5])
def test_simplex_geometry(d, scale):
    _check_regular_simplex(simplex_vertices(d, scale, dtype=DT), d, scale)


def test_reference_simplex_has_the_buggy_norm():
    verts = simplex_vertices(9, reference=True, dtype=DT)
    norm = verts.norm(dim=1)[0].item()
    assert norm == pytest.approx(0.944, abs=5e-4)  # METHODS.md §7: the reference code's vertex norm
    _check_regular_simplex(verts, 9, norm)  # still regular and centred, only shrunk
    assert simplex_vertices(9).dtype == torch.get_default_dtype()


def _scipy_sgmm_pdf(e: np.ndarray, means: np.ndarray, sigma2: float, weights: np.ndarray) -> np.ndarray:
    d = means.shape[1]
    cov = sigma2 * np.eye(d)
    return sum(w * scipy.stats.multivariate_normal(mu, cov).pdf(e) for w, mu in zip(weights, means))


@pytest.mark.parametrize("uniform", [True, False])
def test_sgmm_log_likelihood_matches_scipy(uniform):
    rng = np.random.default_rng(3)
    means = simplex_vertices(4, 1.3, dtype=DT)
    weights = np.full(5, 0.2) if uniform else rng.dirichlet(np.ones(5))
    e = rng.normal(scale=1.2, size=(50, 4))
    expected = np.log(_scipy_sgmm_pdf(e, means.numpy(), 0.3, weights))
    got = sgmm_log_likelihood(torch.tensor(e), means, 0.3, None if uniform else torch.tensor(weights))
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-10)
    # fp16 embeddings are promoted, not evaluated in half precision.
    assert sgmm_log_likelihood(torch.tensor(e[:3]).half(), means, 0.3).dtype == torch.float32


def _numpy_sgmm_log_pdf(e: np.ndarray, means: np.ndarray, sigma2: float) -> np.ndarray:
    """Uniform-weight mixture log density in numpy/scipy (validated against scipy.stats above)."""
    k, d = means.shape
    sq = ((e[:, None, :] - means[None]) ** 2).sum(-1)
    return scipy.special.logsumexp(-sq / (2 * sigma2), axis=1) - math.log(k) - 0.5 * d * math.log(
        2 * math.pi * sigma2)


def _scipy_log_lambda(means: np.ndarray, sigma2: float, n_starts: int = 12) -> float:
    """Independent λ: BFGS on −log L from the centre, the vertices and random starts."""

    def neg_log_l(e: np.ndarray) -> tuple[float, np.ndarray]:
        log_comp = -((e[None, :] - means) ** 2).sum(1) / (2 * sigma2)
        resp = scipy.special.softmax(log_comp)
        return -float(_numpy_sgmm_log_pdf(e[None], means, sigma2)[0]), -(resp @ means - e) / sigma2

    rng = np.random.default_rng(7)
    starts = [np.zeros(means.shape[1]), *means, *rng.normal(scale=1.5, size=(n_starts, means.shape[1]))]
    return max(-scipy.optimize.minimize(neg_log_l, s, jac=True, method="BFGS", options={"gtol": 1e-12}).fun
               for s in starts)


def _gauss_norm(d: int, sigma2: float) -> float:
    return (2 * math.pi * sigma2) ** (-d / 2)


def test_reference_lambda_sits_at_the_centroid():
    d, sigma2 = 9, 0.25
    means = simplex_vertices(d, reference=True, dtype=DT)
    r = means.norm(dim=1)[0].item()
    log_lambda, argmax = sgmm_log_max(means, sigma2, return_argmax=True)
    lam = math.exp(log_lambda)
    # Closed forms: every vertex is at distance r from 0 and √(2r²(1 + 1/d)) from the other vertices.
    l_centre = _gauss_norm(d, sigma2) * math.exp(-(r**2) / (2 * sigma2))
    edge2 = 2 * r**2 * (1 + 1 / d)
    l_vertex = _gauss_norm(d, sigma2) * (1 + d * math.exp(-edge2 / (2 * sigma2))) / (d + 1)
    assert lam == pytest.approx(l_centre, rel=1e-10)
    assert argmax.norm().item() < 1e-6
    assert lam == pytest.approx(0.02209, abs=1e-5)  # METHODS.md §7
    assert l_vertex == pytest.approx(0.01536, abs=1e-5)
    assert log_lambda == pytest.approx(_scipy_log_lambda(means.numpy(), sigma2), abs=1e-9)
    # The unit-norm simplex also peaks at its centre (§7: 0.01774).
    assert math.exp(sgmm_log_max(simplex_vertices(d, dtype=DT), sigma2)) == pytest.approx(0.01774, abs=1e-5)


@pytest.mark.parametrize("scale", [2.0, 3.0])
def test_scaled_simplex_lambda_sits_at_the_vertices(scale):
    d, sigma2 = 9, 0.25
    means = simplex_vertices(d, scale, dtype=DT)
    log_lambda, argmax = sgmm_log_max(means, sigma2, return_argmax=True)
    lam = math.exp(log_lambda)
    single = _gauss_norm(d, sigma2) / (d + 1)  # w·(2πσ²)^(−d/2): one isolated component
    assert single == pytest.approx(0.01311, abs=1e-5)
    assert lam == pytest.approx(single, rel=1e-4)
    nearest = (means - argmax).norm(dim=1).min().item()
    assert nearest < 1e-2
    edge2 = 2 * scale**2 * (1 + 1 / d)
    assert lam >= single * (1 + d * math.exp(-edge2 / (2 * sigma2))) * (1 - 1e-12)  # ≥ L(vertex)
    assert log_lambda == pytest.approx(_scipy_log_lambda(means.numpy(), sigma2), abs=1e-9)


@pytest.mark.parametrize("reference,scale", [(True, 1.0), (False, 1.5), (False, 2.0)])
def test_likelihood_never_exceeds_lambda(reference, scale):
    d, sigma2 = 9, 0.25
    means = simplex_vertices(d, scale, reference=reference, dtype=DT)
    log_lambda, argmax = sgmm_log_max(means, sigma2, return_argmax=True)
    gen = torch.Generator().manual_seed(11)
    n = 100_000
    broad = torch.randn(n // 2, d, generator=gen, dtype=DT) * 0.8
    near = means[torch.randint(0, d + 1, (n // 2,), generator=gen)]
    near = near + torch.randn(n // 2, d, generator=gen, dtype=DT) * 0.2 * torch.rand(n // 2, 1, generator=gen)
    # Points on the segments between the centre and the vertices, where the maximum moves with the scale.
    seg = means[torch.randint(0, d + 1, (2000,), generator=gen)]
    seg = seg * torch.rand(2000, 1, generator=gen, dtype=DT)
    e = torch.cat([broad, near, seg, means, torch.zeros(1, d, dtype=DT), argmax[None]])
    lik = np.exp(_numpy_sgmm_log_pdf(e.numpy(), means.numpy(), sigma2))
    lam = math.exp(log_lambda)
    assert lik.max() <= lam + 1e-7
    assert lik.max() <= lam * (1 + 1e-10)  # much tighter than the spec's absolute 1e-7


def _random_ratios(seed: int, n: int = 64) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.uniform(0.01, 0.99, n), rng.uniform(0.01, 0.99, n)


def test_mdgan_gan_equivalence():
    lam = 0.02209
    d_real, d_fake = _random_ratios(0)
    ll_real = torch.tensor(np.log(d_real * lam))
    ll_fake = torch.tensor(np.log(d_fake * lam))
    gan_d = -np.mean(np.log(d_real)) - np.mean(np.log(1 - d_fake))
    loss_d = mdgan_discriminator_loss(ll_real, ll_fake, math.log(lam), reg=0.0)
    loss_g = mdgan_generator_loss(ll_fake, math.log(lam), reg=0.0)
    assert loss_d.item() - gan_d == pytest.approx(-2 * math.log(lam), abs=1e-12)
    assert loss_g.item() == pytest.approx(np.mean(np.log(1 - d_fake)) + math.log(lam), abs=1e-12)

    # With reg the same identity holds for D_real = (reg + L)/λ and 1 − D_fake = (reg + λ − L)/λ.
    reg = 1e-3  # large enough to matter in the comparison
    l_real, l_fake = d_real * lam, d_fake * lam
    gan_d_reg = -np.mean(np.log((reg + l_real) / lam)) - np.mean(np.log((reg + lam - l_fake) / lam))
    loss_d = mdgan_discriminator_loss(ll_real, ll_fake, torch.tensor(math.log(lam), dtype=DT), reg=reg)
    assert loss_d.item() - gan_d_reg == pytest.approx(-2 * math.log(lam), abs=1e-12)
    ns = mdgan_generator_loss(ll_fake, math.log(lam), reg=reg, non_saturating=True)
    assert ns.item() == pytest.approx(-np.mean(np.log(reg + l_fake)), abs=1e-12)
    # Default reg = 1e-8 is a negligible perturbation.
    loss_d_default = mdgan_discriminator_loss(ll_real, ll_fake, math.log(lam))
    assert loss_d_default.item() - gan_d == pytest.approx(-2 * math.log(lam), abs=1e-4)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_mdgan_losses_finite_at_and_above_lambda(dtype):
    log_lambda = math.log(0.02209)
    # L = λ exactly, and slightly above it (an imperfect λ estimate).
    ll_fake = torch.tensor([log_lambda, log_lambda + 1e-3, log_lambda - 1.0], dtype=dtype, requires_grad=True)
    ll_real = torch.tensor([log_lambda, log_lambda - 2.0], dtype=dtype, requires_grad=True)
    for non_saturating in (False, True):
        loss_d = mdgan_discriminator_loss(ll_real, ll_fake, log_lambda)
        loss_g = mdgan_generator_loss(ll_fake, log_lambda, non_saturating=non_saturating)
        grads = torch.autograd.grad(loss_d + loss_g, (ll_real, ll_fake))
        assert torch.isfinite(loss_d) and torch.isfinite(loss_g)
        assert all(torch.isfinite(g).all() for g in grads)
    # At L = λ the fake term is log(reg + λ(1 − e^{−1e-7})), bounded below thanks to the clamp and reg.
    single = mdgan_generator_loss(torch.tensor([log_lambda], dtype=DT), log_lambda)
    assert single.item() == pytest.approx(math.log(1e-8 + 0.02209 * -math.expm1(-1e-7)), rel=1e-9)
    logit = mdgan_logit(ll_fake, log_lambda)
    assert torch.isfinite(logit).all()


@pytest.mark.parametrize("non_saturating", [False, True])
def test_mdgan_gradient_signs(non_saturating):
    log_lambda = math.log(0.0131)
    d_real, d_fake = _random_ratios(1, 16)
    ll_fake = torch.tensor(np.log(d_fake * 0.0131), requires_grad=True)
    ll_real = torch.tensor(np.log(d_real * 0.0131), requires_grad=True)
    loss_g = mdgan_generator_loss(ll_fake, log_lambda, non_saturating=non_saturating)
    (g_fake,) = torch.autograd.grad(loss_g, ll_fake)
    assert (g_fake < 0).all()  # raising L(e(G(z))) lowers L_G
    with torch.no_grad():
        higher = mdgan_generator_loss(ll_fake + 0.05, log_lambda, non_saturating=non_saturating)
    assert higher < loss_g
    loss_d = mdgan_discriminator_loss(ll_real, ll_fake, log_lambda)
    g_real, g_fake_d = torch.autograd.grad(loss_d, (ll_real, ll_fake))
    assert (g_real < 0).all() and (g_fake_d > 0).all()  # D raises L on data and lowers it on fakes


def test_mdgan_logit_is_the_logit_of_l_over_lambda():
    lam = 0.02209
    ratio = np.concatenate([np.logspace(-8, -1, 20), np.linspace(0.1, 0.999, 20)])
    got = mdgan_logit(torch.tensor(np.log(ratio * lam)), torch.tensor(math.log(lam), dtype=DT))
    np.testing.assert_allclose(got.numpy(), np.log(ratio / (1 - ratio)), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(torch.sigmoid(got).numpy(), ratio, rtol=1e-10)


# ----------------------------------------------------------------------------------------------------
# Unrolled GAN: differentiable optimiser steps
# ----------------------------------------------------------------------------------------------------


def _named_leaves(seed: int) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {
        "weight": torch.randn(3, 4, generator=gen, dtype=DT),
        "bias": torch.randn(4, generator=gen, dtype=DT),
    }


def _grad_sequence(seed: int, steps: int, like: dict[str, torch.Tensor]) -> list[dict[str, torch.Tensor]]:
    gen = torch.Generator().manual_seed(seed)
    return [{k: torch.randn(v.shape, generator=gen, dtype=DT) * (0.1 + s) for k, v in like.items()}
            for s in range(steps)]


def _torch_steps(opt: torch.optim.Optimizer, named: dict[str, torch.nn.Parameter], grads_seq) -> list:
    history = []
    for grads in grads_seq:
        for k, p in named.items():
            p.grad = grads[k].clone()
        opt.step()
        history.append({k: p.detach().clone() for k, p in named.items()})
    return history


@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_differentiable_adam_matches_torch_from_zero_state(weight_decay):
    init = _named_leaves(0)
    named = {k: torch.nn.Parameter(v.clone()) for k, v in init.items()}
    hp = {"lr": 1e-2, "betas": (0.5, 0.9), "eps": 1e-8, "weight_decay": weight_decay}
    opt = torch.optim.Adam(named.values(), **hp)
    grads_seq = _grad_sequence(1, 6, init)
    expected = _torch_steps(opt, named, grads_seq)

    params, state = dict(init), {}
    for grads, want in zip(grads_seq, expected):
        params, state = differentiable_adam_step(params, grads, state, **hp)
        for k in params:
            torch.testing.assert_close(params[k], want[k], rtol=1e-13, atol=1e-14)
    assert state["weight"]["step"] == 6.0


def test_differentiable_adam_matches_torch_from_copied_state():
    init = _named_leaves(2)
    named = {k: torch.nn.Parameter(v.clone()) for k, v in init.items()}
    opt = torch.optim.Adam(named.values(), lr=3e-2, betas=(0.5, 0.999), eps=1e-8)
    grads_seq = _grad_sequence(3, 7, init)
    _torch_steps(opt, named, grads_seq[:4])

    state = adam_state_from_optimizer(opt, named)
    params = {k: p.detach().clone() for k, p in named.items()}
    assert state["bias"]["step"] == 4.0 and not state["bias"]["exp_avg"].requires_grad
    snapshot = state["weight"]["exp_avg"].clone()

    expected = _torch_steps(opt, named, grads_seq[4:])
    torch.testing.assert_close(state["weight"]["exp_avg"], snapshot, rtol=0, atol=0)  # a copy, not a view
    group = opt.param_groups[0]
    for grads, want in zip(grads_seq[4:], expected):
        params, state = differentiable_adam_step(params, grads, state, lr=group["lr"], betas=group["betas"],
                                                 eps=group["eps"])
        for k in params:
            torch.testing.assert_close(params[k], want[k], rtol=1e-13, atol=1e-14)

    # Parameters the optimiser never stepped get no state entry; iterables of pairs work too.
    fresh = torch.nn.Parameter(torch.zeros(2))
    assert adam_state_from_optimizer(torch.optim.Adam([fresh]), [("fresh", fresh)]) == {}


def test_adam_state_rejects_unsupported_settings():
    p = torch.nn.Parameter(torch.zeros(2))
    with pytest.raises(ValueError):
        adam_state_from_optimizer(torch.optim.Adam([p], amsgrad=True), {"p": p})
    with pytest.raises(ValueError):
        adam_state_from_optimizer(torch.optim.AdamW([p], weight_decay=0.01), {"p": p})


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_differentiable_sgd_matches_torch(momentum):
    init = _named_leaves(4)
    named = {k: torch.nn.Parameter(v.clone()) for k, v in init.items()}
    opt = torch.optim.SGD(named.values(), lr=0.05, momentum=momentum)
    grads_seq = _grad_sequence(5, 4, init)
    expected = _torch_steps(opt, named, grads_seq)
    params, state = dict(init), {}
    for grads, want in zip(grads_seq, expected):
        params, state = differentiable_sgd_step(params, grads, state, lr=0.05, momentum=momentum)
        for k in params:
            torch.testing.assert_close(params[k], want[k], rtol=1e-13, atol=1e-14)


def _central_difference(f, x: float, h: float = 1e-6) -> float:
    return (f(x + h) - f(x - h)) / (2 * h)


@pytest.mark.parametrize("copied_state", [True, False])
def test_adam_step_derivative_wrt_grad_matches_finite_differences(copied_state):
    # Fresh state: update ≈ lr·g/(|g| + eps), whose slope is visible only with a large eps.
    eps = 1e-8 if copied_state else 0.1
    state = ({"p": {"exp_avg": torch.tensor(0.3, dtype=DT), "exp_avg_sq": torch.tensor(0.02, dtype=DT),
                    "step": 4.0}} if copied_state else {})
    p0 = torch.tensor(1.5, dtype=DT)

    def new_param(g_value: float) -> float:
        out, _ = differentiable_adam_step({"p": p0}, {"p": torch.tensor(g_value, dtype=DT)}, state,
                                          lr=0.1, betas=(0.5, 0.9), eps=eps)
        return out["p"].item()

    g = torch.tensor(0.7, dtype=DT, requires_grad=True)
    out, _ = differentiable_adam_step({"p": p0}, {"p": g}, state, lr=0.1, betas=(0.5, 0.9), eps=eps)
    assert out["p"].grad_fn is not None
    (slope,) = torch.autograd.grad(out["p"], g)
    assert slope.item() == pytest.approx(_central_difference(new_param, 0.7), rel=1e-6)
    assert abs(slope.item()) > 1e-3


def test_adam_step_zero_grad_zero_state_has_finite_derivative():
    g = torch.zeros(3, dtype=DT, requires_grad=True)
    p = torch.ones(3, dtype=DT)
    out, state = differentiable_adam_step({"p": p}, {"p": g * 2.0}, None, lr=0.1)
    torch.testing.assert_close(out["p"], p)  # a zero gradient moves nothing, as in torch.optim.Adam
    (slope,) = torch.autograd.grad(out["p"].sum(), g)
    assert torch.isfinite(slope).all()
    # Unused parameters (grad None) pass through untouched.
    out, _ = differentiable_adam_step({"p": p}, {"p": None}, state, lr=0.1)
    assert out["p"] is p


def _unrolled_objective(theta: torch.Tensor, psi0: float, b0: float, x, z, k: int, inner: str,
                        create_graph: bool) -> torch.Tensor:
    """f_K(θ) for D(x) = σ(ψx + b), G(z) = θ + z: D takes K differentiable steps on its BCE loss."""
    params = {"psi": torch.tensor(psi0, dtype=DT, requires_grad=True),
              "b": torch.tensor(b0, dtype=DT, requires_grad=True)}
    state = {name: {"exp_avg": torch.tensor(0.2, dtype=DT), "exp_avg_sq": torch.tensor(0.05, dtype=DT),
                    "step": 3.0} for name in params}

    def value(p):  # f = E log D(x) + E log(1 − D(G(z))), with D as logits
        fake = theta + z
        return (-F.softplus(-(p["psi"] * x + p["b"]))).mean() + (-F.softplus(p["psi"] * fake + p["b"])).mean()

    for _ in range(k):
        grads = torch.autograd.grad(-value(params), list(params.values()), create_graph=create_graph)
        grads = dict(zip(params, grads))
        if inner == "adam":
            params, state = differentiable_adam_step(params, grads, state, lr=0.1, betas=(0.5, 0.9))
        else:
            params, state = differentiable_sgd_step(params, grads, None, lr=0.5)
    return value(params)


@pytest.mark.parametrize("inner", ["adam", "sgd"])
def test_unrolled_generator_gradient_matches_finite_differences(inner):
    gen = torch.Generator().manual_seed(8)
    x = torch.randn(6, generator=gen, dtype=DT) + 1.0
    z = torch.randn(6, generator=gen, dtype=DT) * 0.5
    theta = torch.tensor(-0.4, dtype=DT, requires_grad=True)
    k = 3
    f_k = _unrolled_objective(theta, 0.8, 0.1, x, z, k, inner, create_graph=True)
    (exact,) = torch.autograd.grad(f_k, theta)

    def f_k_value(t: float) -> float:
        return _unrolled_objective(torch.tensor(t, dtype=DT), 0.8, 0.1, x, z, k, inner, False).item()

    assert exact.item() == pytest.approx(_central_difference(f_k_value, -0.4), rel=1e-6)

    # The first-order ("lookahead") gradient drops dθ_D^K/dθ: it must differ, or the unroll did nothing.
    f_first = _unrolled_objective(theta, 0.8, 0.1, x, z, k, inner, create_graph=False)
    (first_order,) = torch.autograd.grad(f_first, theta)
    assert abs(exact.item() - first_order.item()) > 1e-4
