"""Fréchet distance between Gaussians fitted to feature sets (FID).

Heusel, Ramsauer, Unterthiner, Nessler, Hochreiter, "GANs trained by a two time-scale update rule converge
to a local Nash equilibrium", NeurIPS 2017; Dowson & Landau, "The Fréchet distance between multivariate
normal distributions", J. Multivariate Anal. 1982:

    d² = ||mu1 - mu2||² + tr(S1 + S2 - 2 (S1^½ S2 S1^½)^½).

pytorch-fid evaluates the trace term with ``scipy.linalg.sqrtm(S1 @ S2)`` (a non-symmetric matrix square
root: slow in 2048-d and it can return complex noise). We use the same quantity written symmetrically:
S1 S2 is similar to the PSD matrix M = S1^½ S2 S1^½, so tr((S1 S2)^½) = Σ sqrt(eig(M)); two symmetric
eigendecompositions, eigenvalues clipped at 0 against round-off. The tests check agreement with
pytorch-fid's ``calculate_frechet_distance`` to 1e-6 relative.

Statistics are float64 numpy arrays: mean and the unbiased (N-1) covariance, as ``np.cov`` / pytorch-fid.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from scipy import linalg
from torch import Tensor

ArrayLike = Tensor | np.ndarray


def gaussian_stats(features: ArrayLike, chunk_size: int = 8192) -> tuple[np.ndarray, np.ndarray]:
    """Mean (d,) and unbiased covariance (d, d) of ``features`` (N, d), both float64 numpy.

    Runs on the features' device (a GPU if they live there), in float64, over row chunks so no float64
    copy of the whole (N, d) matrix is made; the covariance is accumulated around the exact mean
    (two passes), which avoids the cancellation of the one-pass E[xx^T] - mu mu^T formula.
    """
    x = torch.as_tensor(features)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"need features of shape (N >= 2, d), got {tuple(x.shape)}")
    n, d = x.shape
    mu = torch.zeros(d, dtype=torch.float64, device=x.device)
    for start in range(0, n, chunk_size):
        mu += x[start : start + chunk_size].double().sum(0)
    mu /= n
    sigma = torch.zeros(d, d, dtype=torch.float64, device=x.device)
    for start in range(0, n, chunk_size):
        centred = x[start : start + chunk_size].double() - mu
        sigma += centred.T @ centred
    sigma /= n - 1
    return mu.cpu().numpy(), sigma.cpu().numpy()


def _sqrt_psd(matrix: np.ndarray) -> np.ndarray:
    eigenvalues, eigenvectors = linalg.eigh(matrix)
    return (eigenvectors * np.sqrt(np.clip(eigenvalues, 0.0, None))) @ eigenvectors.T


def trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """tr((S1 S2)^½) for symmetric PSD S1, S2, via the eigenvalues of S1^½ S2 S1^½."""
    root1 = _sqrt_psd(sigma1)
    middle = root1 @ sigma2 @ root1
    middle = (middle + middle.T) / 2  # exact symmetry for eigvalsh; removes round-off asymmetry
    eigenvalues = linalg.eigvalsh(middle)
    return float(np.sqrt(np.clip(eigenvalues, 0.0, None)).sum())


def frechet_distance(mu1: ArrayLike, sigma1: ArrayLike, mu2: ArrayLike, sigma2: ArrayLike) -> float:
    """Squared Fréchet (2-Wasserstein) distance between N(mu1, sigma1) and N(mu2, sigma2)."""
    mu1, mu2 = (np.atleast_1d(np.asarray(m, dtype=np.float64)) for m in (mu1, mu2))
    sigma1, sigma2 = (np.atleast_2d(np.asarray(s, dtype=np.float64)) for s in (sigma1, sigma2))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != (mu1.size, mu1.size):
        raise ValueError(f"shape mismatch: {mu1.shape}, {sigma1.shape}, {mu2.shape}, {sigma2.shape}")
    diff = mu1 - mu2
    trace = np.trace(sigma1) + np.trace(sigma2) - 2.0 * trace_sqrt_product(sigma1, sigma2)
    return float(diff @ diff + trace)


def fid_from_features(features1: ArrayLike, features2: ArrayLike) -> float:
    """FID between two feature sets (N1, d) and (N2, d)."""
    return frechet_distance(*gaussian_stats(features1), *gaussian_stats(features2))


def save_gaussian_stats(path: str | Path, mu: np.ndarray, sigma: np.ndarray, key: str, n: int) -> None:
    """Cache reference statistics as .npz (``mu``, ``sigma`` as pytorch-fid's npz, plus ``key`` and ``n``).

    ``key`` should be the extractor's ``cache_key`` plus the reference split, so stale caches are detected.
    Written to a temporary name then renamed, so a crash never leaves a truncated cache behind.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, mu=mu, sigma=sigma, key=np.array(key), n=np.array(n))
    tmp.replace(path)


def load_gaussian_stats(path: str | Path, key: str | None = None) -> tuple[np.ndarray, np.ndarray] | None:
    """Cached (mu, sigma), or None when the file is absent or was computed under another ``key``."""
    path = Path(path)
    if not path.is_file():
        return None
    with np.load(path) as cached:
        if key is not None and ("key" not in cached or str(cached["key"]) != key):
            return None
        return cached["mu"].astype(np.float64), cached["sigma"].astype(np.float64)
