"""Power cells of the Brenier potential u_h(x) = max_i (<x, y_i> + h_i): which cell holds each point.

The cell of x is argmax_i (<x, y_i> + h_i), computed in fp32 score blocks of at most ``chunk_size`` entries
so that an N x n score matrix never sits in memory; the solver, the extended map and the AE-OT method all
evaluate cells through these kernels. Device-agnostic: everything runs on x's device.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
from torch.quasirandom import SobolEngine

DEFAULT_CHUNK_SIZE = 2**22  # score entries per block: 16 MiB of fp32

Reduced = tuple[torch.Tensor, torch.Tensor]  # (values, indices), each (rows, k)


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


def _prepare(x: torch.Tensor, y: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """x, y, h as fp32 on x's device, after checking their shapes."""
    if x.dim() != 2 or y.dim() != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"expected x: (N, d) and y: (n, d), got {tuple(x.shape)} and {tuple(y.shape)}")
    if h.shape != (y.shape[0],):
        raise ValueError(f"expected h: ({y.shape[0]},), got {tuple(h.shape)}")
    device = x.device
    return x.float(), y.to(device=device, dtype=torch.float32), h.to(device=device, dtype=torch.float32)


def _reduce_score_blocks(
    x: torch.Tensor, y: torch.Tensor, h: torch.Tensor, rows: int, cols: int,
    reduce: Callable[[torch.Tensor], Reduced], merge: Callable[[Reduced, Reduced], Reduced],
) -> Iterator[tuple[int, Reduced]]:
    """For each block of ``rows`` points: (first row, ``reduce`` of its score rows merged over the cells).

    ``reduce`` maps a (rows, cols) block of scores <x_p, y_i> + h_i to (values, column indices within the
    block); the indices are shifted to cell indices here, and ``merge`` folds the blocks left to right.
    """
    y_t = y.t()
    for r0 in range(0, x.shape[0], rows):
        xb = x[r0:r0 + rows]
        best: Reduced | None = None
        for c0 in range(0, y.shape[0], cols):
            # addmm fuses "+ h" into the matmul: (rows, d) @ (d, cols) + (cols,)
            val, arg = reduce(torch.addmm(h[c0:c0 + cols], xb, y_t[:, c0:c0 + cols]))
            best = (val, arg + c0) if best is None else merge(best, (val, arg + c0))
        assert best is not None
        yield r0, best


def _keep_better(best: Reduced, new: Reduced) -> Reduced:
    better = new[0] > best[0]  # strict: earlier block (lower index) wins ties
    return torch.where(better, new[0], best[0]), torch.where(better, new[1], best[1])


def power_cell_argmax(x: torch.Tensor, y: torch.Tensor, h: torch.Tensor, *,
                      chunk_size: int = DEFAULT_CHUNK_SIZE) -> torch.Tensor:
    """idx[p] = argmax_i (<x_p, y_i> + h_i) for x: (N, d), y: (n, d), h: (n,) -> LongTensor (N,).

    Scores are computed in fp32 blocks of at most `chunk_size` entries; when the cells are split, a
    running max/argmax is kept per point (ties keep the lower index, as a dense argmax does).
    """
    x, y, h = _prepare(x, y, h)
    idx = torch.empty(x.shape[0], dtype=torch.long, device=x.device)
    if x.shape[0] == 0:
        return idx
    rows, cols = _block_shape(x.shape[0], y.shape[0], chunk_size)
    for r0, (_, best_idx) in _reduce_score_blocks(x, y, h, rows, cols, lambda s: s.max(dim=1), _keep_better):
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

    def merge(best: Reduced, new: Reduced) -> Reduced:
        best_val, pos = torch.cat([best[0], new[0]], dim=1).topk(k, dim=1)
        return best_val, torch.cat([best[1], new[1]], dim=1).gather(1, pos)

    def reduce(scores: torch.Tensor) -> Reduced:
        return scores.topk(min(k, scores.shape[1]), dim=1)

    for r0, (best_val, best_idx) in _reduce_score_blocks(x, y, h, rows, cols, reduce, merge):
        values[r0:r0 + rows] = best_val
        indices[r0:r0 + rows] = best_idx
    return values, indices


def cell_masses(x: torch.Tensor, y: torch.Tensor, h: torch.Tensor, *,
                chunk_size: int = DEFAULT_CHUNK_SIZE) -> torch.Tensor:
    """Empirical mass of each power cell under the points x: (N, d) -> (n,) fp32 summing to 1."""
    idx = power_cell_argmax(x, y, h, chunk_size=chunk_size)
    return count_cells(idx, y.shape[0]).float() / max(1, idx.numel())


def count_cells(idx: torch.Tensor, n_cells: int) -> torch.Tensor:
    """Number of points per cell (n_cells,) long, from the cell indices idx (N,)."""
    # index_add_ instead of bincount: on CUDA bincount reads idx.max() back to the host to size its output
    counts = torch.zeros(n_cells, dtype=torch.long, device=idx.device)
    return counts.index_add_(0, idx, torch.ones_like(idx))


def sobol_cube(engine: SobolEngine, n: int, device: torch.device | str) -> torch.Tensor:
    """Next n points of a Sobol engine mapped to the source cube [-0.5, 0.5]^d, fp32 on `device`."""
    return (engine.draw(n, dtype=torch.float32) - 0.5).to(device)
