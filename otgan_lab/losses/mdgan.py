"""MD-GAN losses: Mixture Density GAN (Eghbal-zadeh, Zellinger, Widmer, CVPR 2019).

The discriminator embeds x into R^d and scores it by the likelihood L(e) of a fixed "simplex Gaussian
mixture" (d + 1 isotropic components centred on a regular simplex). With λ = max_e L(e) and D := L/λ the
losses are the standard GAN ones shifted by constants: D maximises log L(e(x)) + log(λ − L(e(G(z)))),
G minimises log(λ − L(e(G(z)))) (or the non-saturating −log L). Everything is done in log space.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from otgan_lab.numerics import log1mexp

__all__ = [
    "mdgan_discriminator_loss",
    "mdgan_generator_loss",
    "mdgan_logit",
    "sgmm_log_likelihood",
    "sgmm_log_max",
    "simplex_vertices",
]

# log L − log λ is clamped here before log(1 − e^u): L ≤ λ only holds up to the accuracy of λ, and at
# u = 0 the log is −inf. The price is a zero gradient for the rare samples that reach the clamp.
_MAX_LOG_RATIO = -1e-7


def simplex_vertices(
    d: int, scale: float = 1.0, reference: bool = False, dtype: torch.dtype | None = None
) -> Tensor:
    """The d + 1 vertices of a regular simplex in R^d, shape (d + 1, d): centred, all of norm `scale`.

    Construction: e_1, ..., e_d and a·(1, ..., 1) with a = (1 − √(d+1))/d are pairwise √2 apart; centre
    them and rescale. ``reference=True`` reproduces the official MD-GAN code, whose normalisation takes a
    square root inside its accumulation loop and so divides by the wrong number: the vertex norm comes out
    as scale·0.9441 for d = 9 instead of scale. Use it only to reproduce the reference setting.
    """
    if d < 1:
        raise ValueError(f"simplex dimension must be >= 1, got {d}")
    a = (1.0 - math.sqrt(d + 1.0)) / d
    verts = torch.cat([torch.eye(d, dtype=torch.float64), torch.full((1, d), a, dtype=torch.float64)])
    verts = verts - verts.mean(dim=0)
    if reference:
        # The reference's divisor: s ← sqrt(s + x_i²) over vertex 0's coordinates (a bug, kept on purpose).
        divisor = torch.zeros((), dtype=torch.float64)
        for coord in verts[0]:
            divisor = torch.sqrt(divisor + coord * coord)
    else:
        divisor = verts[0].norm()
    verts = scale * verts / divisor
    return verts.to(dtype or torch.get_default_dtype())


def _log_components(e: Tensor, means: Tensor, sigma2: float, log_weights: Tensor) -> Tensor:
    """(n, K) log w_k + log N(e; μ_k, σ² I)."""
    d = e.shape[-1]
    # Differences rather than the ‖e‖² − 2e·μ + ‖μ‖² expansion: exact near the means, where it matters.
    sq_dist = (e.unsqueeze(1) - means.unsqueeze(0)).pow(2).sum(dim=-1)
    return log_weights - 0.5 * d * math.log(2.0 * math.pi * sigma2) - sq_dist / (2.0 * sigma2)


def _log_weights(weights: Tensor | None, k: int, like: Tensor) -> Tensor:
    if weights is None:
        return torch.full((k,), -math.log(k), dtype=like.dtype, device=like.device)
    return torch.as_tensor(weights, dtype=like.dtype, device=like.device).log()


def sgmm_log_likelihood(e: Tensor, means: Tensor, sigma2: float, weights: Tensor | None = None) -> Tensor:
    """log L(e) = logsumexp_k [log w_k − ½ d log(2πσ²) − ‖e − μ_k‖²/(2σ²)], shape (n,) for e of shape (n, d).

    Weights default to uniform 1/K. Half-precision embeddings are promoted to fp32: the exponent spans tens
    of units and fp16 would lose the differences between components.
    """
    if e.dtype in (torch.float16, torch.bfloat16):
        e = e.float()
    means = means.to(dtype=e.dtype, device=e.device)
    log_w = _log_weights(weights, means.shape[0], e)
    return torch.logsumexp(_log_components(e, means, sigma2, log_w), dim=-1)


def sgmm_log_max(
    means: Tensor,
    sigma2: float,
    n_starts: int = 64,
    steps: int = 500,
    *,
    weights: Tensor | None = None,
    seed: int = 0,
    return_argmax: bool = False,
) -> float | tuple[float, Tensor]:
    """log λ = log max_e L(e), found numerically in float64 (never assumed to sit at a vertex).

    Starts at every mean, at the weighted centroid and at `n_starts` uniform points in a ball that covers
    the means plus 3σ. Each start climbs by mean shift, i.e. gradient ascent on log L with step σ², which
    increases L monotonically for isotropic equal-variance mixtures; the best point is then polished with
    Newton steps. With the reference settings (d = 9, σ² = 0.25, |μ| ≈ 1) the maximum is at the centroid,
    not at a vertex. Returns a Python float (and the maximiser, shape (d,), when `return_argmax`).
    Deterministic for a given seed; about a millisecond for d = 9.
    """
    mu = means.detach().to(device="cpu", dtype=torch.float64)
    k, d = mu.shape
    log_w = _log_weights(None if weights is None else weights.detach().cpu(), k, mu)
    w = log_w.exp()
    centroid = (w.unsqueeze(1) * mu).sum(dim=0)

    gen = torch.Generator().manual_seed(seed)
    radius = (mu - centroid).norm(dim=1).max() + 3.0 * math.sqrt(sigma2)
    direction = torch.randn(n_starts, d, generator=gen, dtype=torch.float64)
    direction = direction / direction.norm(dim=1, keepdim=True).clamp_min(1e-12)
    r = radius * torch.rand(n_starts, 1, generator=gen, dtype=torch.float64).pow(1.0 / d)
    e = torch.cat([mu, centroid.unsqueeze(0), centroid + r * direction])

    for _ in range(steps):
        resp = torch.softmax(_log_components(e, mu, sigma2, log_w), dim=1)  # (n, K) responsibilities
        e_next = resp @ mu
        converged = (e_next - e).abs().max() < 1e-10
        e = e_next
        if converged:
            break

    log_l = torch.logsumexp(_log_components(e, mu, sigma2, log_w), dim=1)
    best = int(log_l.argmax())
    best_e, best_val = e[best].clone(), log_l[best]

    # Newton polish of the winner (closed-form Hessian): mean shift converges only linearly where the
    # maximum is flat. A Newton step is kept only if it raises L, so the polish can never make λ worse.
    eye = torch.eye(d, dtype=torch.float64)
    for _ in range(20):
        resp = torch.softmax(_log_components(best_e.unsqueeze(0), mu, sigma2, log_w), dim=1)[0]
        mean = resp @ mu
        grad = (mean - best_e) / sigma2
        centred = mu - mean
        hess = -eye / sigma2 + (resp.unsqueeze(1) * centred).T @ centred / sigma2**2
        if grad.abs().max() < 1e-14 or torch.linalg.eigvalsh(hess).max() >= 0:
            break  # converged, or not in a strictly concave neighbourhood where Newton is safe
        cand = best_e - torch.linalg.solve(hess, grad)
        cand_val = torch.logsumexp(_log_components(cand.unsqueeze(0), mu, sigma2, log_w), dim=1)[0]
        if not cand_val > best_val:
            break
        best_e, best_val = cand, cand_val

    log_lambda = float(best_val)
    return (log_lambda, best_e) if return_argmax else log_lambda


def _as_log_lambda(log_lambda: float | Tensor, like: Tensor) -> Tensor:
    return torch.as_tensor(log_lambda, dtype=like.dtype, device=like.device)


def _log_ratio(loglik: Tensor, log_lambda: float | Tensor) -> Tensor:
    """u = log(L/λ), clamped to ≤ −1e-7 so that log(λ − L) stays finite."""
    return (loglik - _as_log_lambda(log_lambda, loglik)).clamp(max=_MAX_LOG_RATIO)


def _log_lambda_minus_l(loglik: Tensor, log_lambda: float | Tensor) -> Tensor:
    """log(λ − L) = log λ + log(1 − L/λ)."""
    return _as_log_lambda(log_lambda, loglik) + log1mexp(_log_ratio(loglik, log_lambda))


def _log_plus_reg(log_x: Tensor, reg: float) -> Tensor:
    """log(reg + x) from log x, without leaving log space."""
    if reg == 0:
        return log_x
    return torch.logaddexp(log_x, torch.full_like(log_x, math.log(reg)))


def mdgan_discriminator_loss(
    loglik_real: Tensor, loglik_fake: Tensor, log_lambda: float | Tensor, reg: float = 1e-8
) -> Tensor:
    """L_D = −E log(reg + L(e(x))) − E log(reg + λ − L(e(G(z)))), from log-likelihoods (fakes detached)."""
    real_term = _log_plus_reg(loglik_real, reg).mean()
    fake_term = _log_plus_reg(_log_lambda_minus_l(loglik_fake, log_lambda), reg).mean()
    return -real_term - fake_term


def mdgan_generator_loss(
    loglik_fake: Tensor, log_lambda: float | Tensor, reg: float = 1e-8, non_saturating: bool = False
) -> Tensor:
    """L_G = E log(reg + λ − L(e(G(z)))) (reference, saturating) or −E log(reg + L(e(G(z)))) (NS).

    Call it on non-detached fakes; the saturating form's gradient vanishes where L ≪ λ, as in a minimax GAN.
    """
    if non_saturating:
        return -_log_plus_reg(loglik_fake, reg).mean()
    return _log_plus_reg(_log_lambda_minus_l(loglik_fake, log_lambda), reg).mean()


def mdgan_logit(loglik: Tensor, log_lambda: float | Tensor) -> Tensor:
    """log(L/(λ − L)): the logit of D = L/λ (sigmoid(logit) = L/λ), as DRS needs it. Shape of loglik."""
    u = _log_ratio(loglik, log_lambda)
    return u - log1mexp(u)
