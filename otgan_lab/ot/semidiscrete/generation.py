"""Generation by the extended semi-discrete OT map (AE-OT, METHODS.md §9): new codes between neighbours.

For fresh QMC points take the top-k supporting planes (I0 = own cell, Ik = k-th best), keep pairs whose
plane normals n_i = (y_i, -1) / ||(y_i, -1)|| meet at an angle <= threshold (a larger angle means the pair
straddles a singular set between modes, and interpolating it would produce a mode mixture), keep one pair
per cell I0, and emit (1 - lam) y_I0 + lam y_Ik. The angle depends on the scale of y: normalise codes first.
"""

from __future__ import annotations

import math

import torch
from torch.quasirandom import SobolEngine

from otgan_lab.ot.semidiscrete.cells import DEFAULT_CHUNK_SIZE, sobol_cube, topk_cells


def plane_angles(y: torch.Tensor, i: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
    """Angle theta in [0, pi] between the supporting planes of cells i and j (broadcastable index tensors).

    theta = arccos(min(1, n_i . n_j)) with n_i = (y_i, -1) / ||(y_i, -1)||, evaluated as
    2 asin(||n_i - n_j|| / 2), the same angle without arccos's loss of precision near 0 (theta(i, i) = 0).
    """
    lifted = torch.cat([y.float(), -torch.ones(y.shape[0], 1, dtype=torch.float32, device=y.device)], dim=1)
    normals = lifted / torch.linalg.vector_norm(lifted, dim=1, keepdim=True)
    chord = torch.linalg.vector_norm(normals[i] - normals[j], dim=-1)
    return 2.0 * torch.asin((0.5 * chord).clamp(max=1.0))


def sample_cell_pairs(y: torch.Tensor, h: torch.Tensor, n: int, *, angle_threshold: float, k: int = 20,
                      seed: int = 1, n_source: int | None = None, max_rounds: int | None = None,
                      dedup: bool = True, chunk_size: int = DEFAULT_CHUNK_SIZE) -> torch.Tensor:
    """n index pairs (I0, Ik): (n, 2) long, I0 the cell of a QMC source point and Ik one of its top-k planes.

    Each round draws `n_source` new points of a scrambled Sobol sequence (seed: use a different one from
    the solver's, or the points sit on the solver's own QMC set) in [-0.5, 0.5]^d, forms the pairs
    (I0, Ik), k = 1..k-1, keeps those with plane angle <= angle_threshold (math.pi keeps all), and with
    `dedup` keeps one random pair per cell I0 (pyOMT: at most one new sample per cell and round). Pairs
    are not index-sorted, so I0 always is the source point's own cell. Rounds repeat until n pairs exist;
    RuntimeError after max_rounds (default: enough for ~4x the rounds that n needs) if they do not.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    n_cells, dim = y.shape
    if not 2 <= k <= n_cells:
        raise ValueError(f"k must be in [2, n_cells={n_cells}] to form pairs, got {k}")
    device = y.device
    n_source = n_source if n_source is not None else max(n, 4096)
    if max_rounds is None:
        per_round = min(n_source, n_cells) if dedup else n_source
        max_rounds = 8 + 4 * math.ceil(n / max(1, per_round))
    engine = SobolEngine(dimension=dim, scramble=True, seed=seed)
    gen = torch.Generator(device="cpu").manual_seed(seed)  # CPU generator: same draws on every device
    kept: list[torch.Tensor] = []
    total = 0
    for _ in range(max_rounds):
        if total >= n:
            break
        x = sobol_cube(engine, n_source, device)
        _, top = topk_cells(x, y, h, k, chunk_size=chunk_size)
        i0 = top[:, :1].expand(-1, k - 1).reshape(-1)
        ik = top[:, 1:].reshape(-1)
        ok = plane_angles(y, i0, ik) <= angle_threshold
        pairs = torch.stack([i0[ok], ik[ok]], dim=1)
        pairs = pairs[torch.randperm(pairs.shape[0], generator=gen).to(device)]
        if dedup and pairs.shape[0]:
            pairs = _first_per_key(pairs)
        kept.append(pairs)
        total += pairs.shape[0]
    if total < n:
        raise RuntimeError(
            f"only {total} of {n} code pairs passed angle_threshold={angle_threshold:.3g} rad (k={k}) in "
            f"{max_rounds} rounds of {n_source} source points; raise angle_threshold or k, normalise the "
            "codes (the angle depends on their scale), or pass a larger max_rounds")
    pairs = torch.cat(kept) if kept else torch.empty(0, 2, dtype=torch.long, device=device)
    return pairs[torch.randperm(pairs.shape[0], generator=gen).to(device)[:n]]


def _first_per_key(pairs: torch.Tensor) -> torch.Tensor:
    """Rows of (P, 2) pairs keeping the first occurrence of each pairs[:, 0]."""
    keys = pairs[:, 0]
    order = torch.argsort(keys, stable=True)  # stable: equal keys keep their (random) order
    sorted_keys = keys[order]
    is_first = torch.ones_like(sorted_keys, dtype=torch.bool)
    is_first[1:] = sorted_keys[1:] != sorted_keys[:-1]
    return pairs[order[is_first]]


def generate_codes(y: torch.Tensor, h: torch.Tensor, n: int, *, angle_threshold: float, k: int = 20,
                   interp: float | str = 0.75, seed: int = 1, n_source: int | None = None,
                   max_rounds: int | None = None, dedup: bool = True,
                   chunk_size: int = DEFAULT_CHUNK_SIZE) -> torch.Tensor:
    """n new codes (n, d) from the extended SDOT map: (1 - lam) y_I0 + lam y_Ik over accepted pairs.

    interp: a fixed lam (pyOMT CelebA: 0.75, "dissim") or "uniform" for lam ~ U[0, 1] per code (2-D demo).
    y, h and angle_threshold must be on the scale the solve used (see `normalize_codes`); see
    `sample_cell_pairs` for the pair rule and the remaining arguments.
    """
    pairs = sample_cell_pairs(y, h, n, angle_threshold=angle_threshold, k=k, seed=seed, n_source=n_source,
                              max_rounds=max_rounds, dedup=dedup, chunk_size=chunk_size)
    if interp == "uniform":
        gen = torch.Generator(device="cpu").manual_seed(seed + 1)
        lam = torch.rand(pairs.shape[0], 1, generator=gen).to(y.device)
    elif isinstance(interp, (int, float)) and 0.0 <= float(interp) <= 1.0:
        lam = torch.full((pairs.shape[0], 1), float(interp), device=y.device)
    else:
        raise ValueError(f"interp must be a number in [0, 1] or 'uniform', got {interp!r}")
    y = y.float()
    return torch.lerp(y[pairs[:, 0]], y[pairs[:, 1]], lam)

