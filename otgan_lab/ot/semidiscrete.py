"""Semi-discrete optimal transport from the uniform cube to a discrete measure, as in AE-OT.

Paper: An, Guo, Lei, Luo, Yau, Gu, "AE-OT: A new generative model based on extended semi-discrete optimal
transport", ICLR 2020 (reference code: pyOMT). METHODS.md §9 is the specification followed here.

Source mu = uniform on the cube [-0.5, 0.5]^d; target nu = sum_i nu_i delta_{y_i}, y: (n, d), nu: (n,).
For the quadratic cost the Brenier potential is u_h(x) = max_i (<x, y_i> + h_i) with h: (n,), and the OT map
sends the power cell W_i(h) = {x : argmax_j (<x, y_j> + h_j) = i} to y_i. The convex energy
E(h) = int u_h dmu - sum_i nu_i h_i has gradient g_i = mu(W_i(h)) - nu_i, so h is found by descending E:

1. mu(W_i) is estimated with N scrambled-Sobol points x: (N, d) that are the same in every iteration
   (the estimate is then a deterministic function of h, so the noise does not random-walk h); the cell of
   each point is a chunked argmax of x @ y.T + h, never an N x n matrix in memory.
2. Adam without bias correction updates h, and h is re-centred to zero mean (E is invariant to h + c).
3. When ||g||_2 has not improved for `patience` iterations the QMC resolution is the limit, so N doubles
   (the first N points stay, the next N of the sequence are appended), up to `max_samples`.
4. Stop when ||g||_2 < tol (h is the one at which g was measured) or after max_iter iterations.

Generation uses the extended map (METHODS.md §9): for fresh QMC points take the top-k supporting planes
(I0 = own cell, Ik = k-th best), keep pairs whose plane normals n_i = (y_i, -1) / ||(y_i, -1)|| meet at an
angle <= threshold (a larger angle means the pair straddles a singular set between modes, and
interpolating it would produce a mode mixture), keep one pair per cell I0, and emit
(1 - lam) y_I0 + lam y_Ik. The angle depends on the scale of y: use `normalize_codes` first.

Everything here is pure torch and device-agnostic (the device of `y`, or the solver's `device`); the
score matrices are fp32.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch.quasirandom import SobolEngine

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "CodeStats",
    "SemiDiscreteOT",
    "SemiDiscreteOTResult",
    "cell_masses",
    "denormalize_codes",
    "generate_codes",
    "normalize_codes",
    "plane_angles",
    "power_cell_argmax",
    "sample_cell_pairs",
    "sobol_cube",
    "topk_cells",
]

DEFAULT_CHUNK_SIZE = 2**22  # score entries per block: 16 MiB of fp32


# ----------------------------------------------------------------------------------------------------------
# Kernels
# ----------------------------------------------------------------------------------------------------------

def _block_shape(n_points: int, n_cells: int, chunk_size: int) -> tuple[int, int]:
    """(rows, cols) of a score block with rows * cols <= chunk_size.

    Prefer all cells in one block (no running-max merge); when the cells alone would leave fewer than
    1024 rows, split the cells as well so that a matmul block keeps a useful number of rows.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    cols = min(n_cells, max(1, chunk_size // max(1, min(n_points, 1024))))
    rows = min(max(n_points, 1), max(1, chunk_size // cols))
    return rows, cols


def _prepare(x: torch.Tensor, y: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    if x.dim() != 2 or y.dim() != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"expected x: (N, d) and y: (n, d), got {tuple(x.shape)} and {tuple(y.shape)}")
    if h.shape != (y.shape[0],):
        raise ValueError(f"expected h: ({y.shape[0]},), got {tuple(h.shape)}")
    device = x.device
    return x.float(), y.to(device=device, dtype=torch.float32), h.to(device=device, dtype=torch.float32)


def power_cell_argmax(x: torch.Tensor, y: torch.Tensor, h: torch.Tensor, *,
                      chunk_size: int = DEFAULT_CHUNK_SIZE) -> torch.Tensor:
    """idx[p] = argmax_i (<x_p, y_i> + h_i) for x: (N, d), y: (n, d), h: (n,) -> LongTensor (N,).

    Scores are computed in fp32 blocks of at most `chunk_size` entries; when the cells are split, a
    running max/argmax is kept per point (ties keep the lower index, as a dense argmax does).
    """
    x, y, h = _prepare(x, y, h)
    n_points, n_cells = x.shape[0], y.shape[0]
    idx = torch.empty(n_points, dtype=torch.long, device=x.device)
    if n_points == 0:
        return idx
    rows, cols = _block_shape(n_points, n_cells, chunk_size)
    y_t = y.t()
    for r0 in range(0, n_points, rows):
        xb = x[r0:r0 + rows]
        best_val: torch.Tensor | None = None
        best_idx: torch.Tensor | None = None
        for c0 in range(0, n_cells, cols):
            # addmm fuses "+ h" into the matmul: (rows, d) @ (d, cols) + (cols,)
            val, arg = torch.addmm(h[c0:c0 + cols], xb, y_t[:, c0:c0 + cols]).max(dim=1)
            if best_val is None or best_idx is None:
                best_val, best_idx = val, arg + c0
            else:
                better = val > best_val  # strict: earlier block (lower index) wins ties
                best_val = torch.where(better, val, best_val)
                best_idx = torch.where(better, arg + c0, best_idx)
        idx[r0:r0 + rows] = best_idx
    return idx


def topk_cells(x: torch.Tensor, y: torch.Tensor, h: torch.Tensor, k: int, *,
               chunk_size: int = DEFAULT_CHUNK_SIZE) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k supporting planes per point: values, indices of shape (N, k), best first.

    values[p, j] = <x_p, y_{indices[p, j]}> + h_{indices[p, j]}; blocks as in `power_cell_argmax`, merging
    each block's top-k into the running top-k (2k candidates per point).
    """
    x, y, h = _prepare(x, y, h)
    n_points, n_cells = x.shape[0], y.shape[0]
    if not 1 <= k <= n_cells:
        raise ValueError(f"k must be in [1, n_cells={n_cells}], got {k}")
    values = torch.empty(n_points, k, dtype=torch.float32, device=x.device)
    indices = torch.empty(n_points, k, dtype=torch.long, device=x.device)
    if n_points == 0:
        return values, indices
    # a block narrower than k could not return k candidates; widen it (memory grows by at most k columns)
    rows, cols = _block_shape(n_points, n_cells, chunk_size)
    cols = max(cols, k)
    rows = max(1, min(rows, chunk_size // cols))
    y_t = y.t()
    for r0 in range(0, n_points, rows):
        xb = x[r0:r0 + rows]
        best_val: torch.Tensor | None = None
        best_idx: torch.Tensor | None = None
        for c0 in range(0, n_cells, cols):
            scores = torch.addmm(h[c0:c0 + cols], xb, y_t[:, c0:c0 + cols])
            val, arg = scores.topk(min(k, scores.shape[1]), dim=1)
            arg = arg + c0
            if best_val is None or best_idx is None:
                best_val, best_idx = val, arg
            else:
                cand_val = torch.cat([best_val, val], dim=1)
                cand_idx = torch.cat([best_idx, arg], dim=1)
                best_val, pos = cand_val.topk(k, dim=1)
                best_idx = cand_idx.gather(1, pos)
        values[r0:r0 + rows] = best_val
        indices[r0:r0 + rows] = best_idx
    return values, indices


def cell_masses(x: torch.Tensor, y: torch.Tensor, h: torch.Tensor, *,
                chunk_size: int = DEFAULT_CHUNK_SIZE) -> torch.Tensor:
    """Empirical mass of each power cell under the points x: (N, d) -> (n,) fp32 summing to 1."""
    idx = power_cell_argmax(x, y, h, chunk_size=chunk_size)
    return _count_cells(idx, y.shape[0]).float() / max(1, idx.numel())


def _count_cells(idx: torch.Tensor, n_cells: int) -> torch.Tensor:
    # index_add_ instead of bincount: on CUDA bincount reads idx.max() back to the host to size its output
    counts = torch.zeros(n_cells, dtype=torch.long, device=idx.device)
    return counts.index_add_(0, idx, torch.ones_like(idx))


def sobol_cube(engine: SobolEngine, n: int, device: torch.device | str) -> torch.Tensor:
    """Next n points of a Sobol engine mapped to the source cube [-0.5, 0.5]^d, fp32 on `device`."""
    return (engine.draw(n, dtype=torch.float32) - 0.5).to(device)


# ----------------------------------------------------------------------------------------------------------
# Solver
# ----------------------------------------------------------------------------------------------------------

@dataclass
class SemiDiscreteOTResult:
    """Output of `SemiDiscreteOT.solve`.

    h: (n,) fp32 zero-mean heights; the OT map is x -> y[power_cell_argmax(x, y, h)].
    grad_norm: ||mu_hat(W(h)) - nu||_2 at the returned h, with the solver's final QMC point set.
    mass: (n,) that estimate of mu(W_i(h)); coverage: fraction of cells with nonzero estimated mass.
    history: per iteration lists "grad_norm", "coverage", "n_samples" (values measured before the update).
    """

    h: torch.Tensor
    grad_norm: float
    n_iter: int
    coverage: float
    converged: bool
    n_samples: int
    mass: torch.Tensor
    elapsed_s: float
    history: dict[str, list] = field(default_factory=dict)


OnIter = Callable[[int, float, float], None]


@dataclass
class SemiDiscreteOT:
    """pyOMT-style solver for semi-discrete OT from uniform on [-0.5, 0.5]^d to sum_i nu_i delta_{y_i}.

    lr must match the spread of y (5e-2 for AE codes in pyOMT, ~1e-4 for 2-D toys): Adam moves every h_i
    by about lr per step. n_samples is the initial QMC sample count, doubled on stagnation up to
    max_samples; the point set is kept on the device (max_samples * d * 4 bytes).
    Host syncs happen only every `check_every` iterations (default: 10 on CUDA, 1 on CPU where a "sync" is
    free): convergence, doubling, time limit, callbacks and the progress bar are handled then. The update
    is masked on-device as soon as ||g|| < tol, so the returned h is the one that met the tolerance.
    time_limit_s stops the solve (unconverged) at the first check after that many seconds.
    """

    lr: float = 5e-2
    tol: float = 2e-3
    max_iter: int = 20_000
    n_samples: int = 20_000
    max_samples: int = 2**20
    patience: int = 30
    chunk_size: int = DEFAULT_CHUNK_SIZE
    seed: int = 0
    device: torch.device | str | None = None
    check_every: int | None = None
    time_limit_s: float | None = None

    def solve(self, y: torch.Tensor, nu: torch.Tensor | None = None, h0: torch.Tensor | None = None, *,
              on_iter: OnIter | None = None, progress: bool = False) -> SemiDiscreteOTResult:
        """Find h such that every power cell W_i(h) has mass nu_i (uniform 1/n when nu is None).

        on_iter(it, grad_norm, coverage) is called once per iteration, in bursts every `check_every`
        iterations (that is when the values reach the host). progress=True draws a rich progress bar.
        """
        if y.dim() != 2 or y.shape[0] < 1:
            raise ValueError(f"expected y: (n, d) with n >= 1, got {tuple(y.shape)}")
        if self.n_samples < 1 or self.max_samples < self.n_samples:
            raise ValueError("need 1 <= n_samples <= max_samples")
        device = torch.device(self.device) if self.device is not None else y.device
        check_every = self.check_every if self.check_every is not None else (1 if device.type == "cpu" else 10)
        n_cells, dim = y.shape
        y = y.to(device=device, dtype=torch.float32)
        nu = self._check_nu(nu, n_cells, device)
        h = torch.zeros(n_cells, device=device) if h0 is None else h0.to(device=device, dtype=torch.float32)
        h = h - h.mean()  # E(h + c) = E(h): pin the constant as pyOMT does after each step
        m = torch.zeros_like(h)
        v = torch.zeros_like(h)
        done = torch.zeros((), dtype=torch.bool, device=device)  # latched once ||g|| < tol

        engine = SobolEngine(dimension=dim, scramble=True, seed=self.seed)
        points = sobol_cube(engine, self.n_samples, device)

        history: dict[str, list] = {"grad_norm": [], "coverage": [], "n_samples": []}
        pending_norm: list[torch.Tensor] = []
        pending_cov: list[torch.Tensor] = []
        best_norm, stall = math.inf, 0
        converged, n_iter = False, 0
        counts = torch.zeros(n_cells, dtype=torch.long, device=device)
        start = time.perf_counter()
        bar = _RichBar(self.max_iter) if progress else None
        try:
            for it in range(1, self.max_iter + 1):
                counts = _count_cells(power_cell_argmax(points, y, h, chunk_size=self.chunk_size), n_cells)
                g = counts.float() / points.shape[0] - nu
                norm = torch.linalg.vector_norm(g)
                done = done | (norm < self.tol)
                # Adam without bias correction (pyOMT); frozen once converged so h stays the accepted one
                m = torch.where(done, m, 0.9 * m + 0.1 * g)
                v = torch.where(done, v, 0.999 * v + 0.001 * g * g)
                step = h - self.lr * m / (v.sqrt() + 1e-8)
                h = torch.where(done, h, step - step.mean())
                pending_norm.append(norm)
                pending_cov.append((counts > 0).float().mean())
                if it % check_every and it != self.max_iter:
                    continue
                # ---- host sync: one transfer for the whole window ----
                window = torch.stack([torch.stack(pending_norm), torch.stack(pending_cov)]).tolist()
                first = it - len(pending_norm) + 1
                pending_norm, pending_cov = [], []
                for offset, (gn, cov) in enumerate(zip(*window)):
                    n_iter = first + offset
                    history["grad_norm"].append(gn)
                    history["coverage"].append(cov)
                    history["n_samples"].append(points.shape[0])
                    if on_iter is not None:
                        on_iter(n_iter, gn, cov)
                    if gn < self.tol:
                        converged = True
                        break
                    if gn < best_norm:
                        best_norm, stall = gn, 0
                    else:
                        stall += 1
                if bar is not None:
                    bar.update(n_iter, history["grad_norm"][-1], history["coverage"][-1], points.shape[0])
                if converged:
                    break
                if self.time_limit_s is not None and time.perf_counter() - start > self.time_limit_s:
                    break
                if stall >= self.patience and points.shape[0] < self.max_samples and it < self.max_iter:
                    # the QMC estimate is the bottleneck: append the next points of the same sequence
                    extra = min(points.shape[0], self.max_samples - points.shape[0])
                    points = torch.cat([points, sobol_cube(engine, extra, device)])
                    stall = 0
        finally:
            if bar is not None:
                bar.close()

        # grad_norm/mass/coverage must describe the returned h: once converged h was frozen, so the last
        # counts were measured at it; otherwise h moved after the last measurement and needs one more pass
        if converged:
            mass = counts.float() / points.shape[0]
        else:
            mass = cell_masses(points, y, h, chunk_size=self.chunk_size)
        final_norm = float(torch.linalg.vector_norm(mass - nu))
        return SemiDiscreteOTResult(
            h=h, grad_norm=final_norm, n_iter=n_iter, coverage=float((mass > 0).float().mean()),
            converged=converged, n_samples=points.shape[0], mass=mass,
            elapsed_s=time.perf_counter() - start, history=history,
        )

    @staticmethod
    def _check_nu(nu: torch.Tensor | None, n_cells: int, device: torch.device) -> torch.Tensor:
        if nu is None:
            return torch.full((n_cells,), 1.0 / n_cells, device=device)
        nu = nu.to(device=device, dtype=torch.float32)
        if nu.shape != (n_cells,) or bool((nu < 0).any()) or abs(float(nu.sum()) - 1.0) > 1e-4:
            raise ValueError("nu must be a nonnegative (n,) vector summing to 1")
        return nu


class _RichBar:
    """rich progress bar showing ||g||, coverage and the QMC sample count; imported only when asked for."""

    def __init__(self, total: int) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self._progress = Progress(
            TextColumn("semi-discrete OT"), BarColumn(), MofNCompleteColumn(),
            TextColumn("||g|| {task.fields[g]:.3e}  coverage {task.fields[cov]:.3f}  N {task.fields[n]}"),
            TimeElapsedColumn(),
        )
        self._task = self._progress.add_task("sdot", total=total, g=float("nan"), cov=0.0, n=0)
        self._progress.start()

    def update(self, it: int, grad_norm: float, coverage: float, n_samples: int) -> None:
        self._progress.update(self._task, completed=it, g=grad_norm, cov=coverage, n=n_samples)

    def close(self) -> None:
        self._progress.stop()


# ----------------------------------------------------------------------------------------------------------
# Extended map: generation of new codes
# ----------------------------------------------------------------------------------------------------------

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


# ----------------------------------------------------------------------------------------------------------
# Code normalisation
# ----------------------------------------------------------------------------------------------------------

@dataclass
class CodeStats:
    """codes = normalized * scale + shift; shift: (d,), scale: (d,) (equal entries for 'isotropic')."""

    shift: torch.Tensor
    scale: torch.Tensor


def normalize_codes(codes: torch.Tensor, mode: str = "isotropic") -> tuple[torch.Tensor, CodeStats]:
    """Centre codes (N, d) per dimension and scale them into [-1, 1] (METHODS.md §9 pitfalls).

    "isotropic" divides by the single largest |centred coordinate|, keeping the geometry (and so the OT
    map) up to scale; "per_dim" scales every dimension to [-1, 1] on its own, which changes the metric.
    """
    codes = codes.float()
    shift = codes.mean(dim=0)
    centred = codes - shift
    if mode == "isotropic":
        scale = centred.abs().max().clamp(min=1e-12).expand(codes.shape[1]).clone()
    elif mode == "per_dim":
        scale = centred.abs().amax(dim=0).clamp(min=1e-12)
    else:
        raise ValueError(f"mode must be 'isotropic' or 'per_dim', got {mode!r}")
    return centred / scale, CodeStats(shift=shift, scale=scale)


def denormalize_codes(normalized: torch.Tensor, stats: CodeStats) -> torch.Tensor:
    """Inverse of `normalize_codes`: back to the encoder's code space for decoding."""
    return normalized * stats.scale.to(normalized.device) + stats.shift.to(normalized.device)
