"""Semi-discrete OT solver of AE-OT (An et al., ICLR 2020; pyOMT; METHODS.md §9): the heights h of the cells.

From mu = uniform on [-0.5, 0.5]^d to nu = sum_i nu_i delta_{y_i}, the Brenier potential is
u_h(x) = max_i (<x, y_i> + h_i); h minimises the convex E(h) = int u_h dmu - sum_i nu_i h_i, whose gradient
is g_i = mu(W_i(h)) - nu_i. mu(W_i) is estimated on a fixed scrambled-Sobol point set (so the estimate is
a deterministic function of h), h descends by Adam without bias correction and is re-centred (E(h + c) =
E(h)), and the point set doubles when ||g|| stalls (the QMC resolution is then the limit).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch.quasirandom import SobolEngine

from otgan_lab.ot.semidiscrete.cells import (
    DEFAULT_CHUNK_SIZE,
    cell_masses,
    count_cells,
    power_cell_argmax,
    sobol_cube,
)
from otgan_lab.ot.semidiscrete.progress import RichBar


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
        check_every = self.check_every
        if check_every is None:
            check_every = 1 if device.type == "cpu" else 10
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
        bar = RichBar(self.max_iter) if progress else None
        try:
            for it in range(1, self.max_iter + 1):
                counts = count_cells(power_cell_argmax(points, y, h, chunk_size=self.chunk_size), n_cells)
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

