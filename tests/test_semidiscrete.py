"""Semi-discrete OT (AE-OT, METHODS.md §9 "Unit tests") against closed forms and dense computations.

Oracles: the 1-D semi-discrete OT problem has a closed form (cells are consecutive intervals of mass nu_i,
and neighbouring heights satisfy h_i - h_{i+1} = c_i (y_{i+1} - y_i) at the boundary c_i); symmetry fixes
h = 0 for the four corners; cell masses are checked with fresh pseudo-random Monte Carlo points and a dense
float64 argmax, never with the solver's own QMC estimate.
"""

from __future__ import annotations

import math

import pytest
import torch

from otgan_lab.ot.semidiscrete import (
    SemiDiscreteOT,
    denormalize_codes,
    generate_codes,
    normalize_codes,
    plane_angles,
    power_cell_argmax,
    sample_cell_pairs,
    topk_cells,
)


@pytest.fixture(autouse=True, scope="module")
def _single_thread():
    # the problems here are tiny; on a shared 2-core machine intra-op threads mostly wait on each other
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def dense_scores(x: torch.Tensor, y: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    return x.double() @ y.double().T + h.double()


def fresh_mc_masses(y: torch.Tensor, h: torch.Tensor, n_points: int = 200_000,
                    seed: int = 123) -> torch.Tensor:
    """Cell masses from i.i.d. uniform points on [-0.5, 0.5]^d and a dense float64 argmax."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(n_points, y.shape[1], generator=gen, dtype=torch.float64) - 0.5
    idx = dense_scores(x, y, h).argmax(dim=1)
    return torch.bincount(idx, minlength=y.shape[0]).double() / n_points


def exact_heights_1d(y: torch.Tensor, nu: torch.Tensor) -> torch.Tensor:
    """Closed-form zero-mean h for sorted 1-D targets y: (n, 1) and weights nu: (n,), in float64."""
    y1 = y[:, 0].double()
    assert bool((y1[1:] > y1[:-1]).all()), "targets must be sorted"
    boundaries = -0.5 + nu.double().cumsum(0)[:-1]  # c_i between cells i and i + 1
    h = torch.zeros_like(y1)
    h[1:] = -torch.cumsum(boundaries * (y1[1:] - y1[:-1]), dim=0)
    return h - h.mean()


# ------------------------------------------------------------------------------------------------ kernels

@pytest.mark.parametrize("chunk_size", [1, 7, 53, 200, 4096, 10**7])
def test_power_cell_argmax_matches_dense(chunk_size: int) -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(300, 5, generator=gen) - 0.5
    y = torch.randn(53, 5, generator=gen)
    h = 0.3 * torch.randn(53, generator=gen)
    idx = power_cell_argmax(x, y, h, chunk_size=chunk_size)
    scores = dense_scores(x, y, h)
    assert idx.dtype == torch.long and idx.shape == (300,)
    # fp32 may only disagree with the float64 argmax on near-ties, and then by a near-tie
    best = scores.max(dim=1).values
    assert torch.allclose(scores.gather(1, idx[:, None])[:, 0], best, atol=1e-5)
    top2 = scores.topk(2, dim=1).values
    clear = (top2[:, 0] - top2[:, 1]) > 1e-4
    assert clear.float().mean() > 0.95
    assert torch.equal(idx[clear], scores.argmax(dim=1)[clear])


@pytest.mark.parametrize("chunk_size", [1, 30, 500, 10**7])
def test_topk_cells_matches_dense(chunk_size: int) -> None:
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(200, 3, generator=gen) - 0.5
    y = torch.randn(41, 3, generator=gen)
    h = 0.2 * torch.randn(41, generator=gen)
    values, indices = topk_cells(x, y, h, 6, chunk_size=chunk_size)
    ref_values, ref_indices = dense_scores(x, y, h).topk(6, dim=1)
    assert values.shape == indices.shape == (200, 6)
    assert torch.allclose(values.double(), ref_values, atol=1e-5)
    assert bool((values[:, :-1] >= values[:, 1:]).all()), "best plane first"
    gaps = ref_values[:, :-1] - ref_values[:, 1:]
    clear = (gaps > 1e-4).all(dim=1)
    assert clear.float().mean() > 0.9
    assert torch.equal(indices[clear], ref_indices[clear])
    assert torch.equal(indices[:, 0], power_cell_argmax(x, y, h, chunk_size=chunk_size))


def test_plane_angles_identity_symmetry_and_formula() -> None:
    gen = torch.Generator().manual_seed(2)
    y = torch.randn(30, 4, generator=gen)
    i = torch.arange(30)
    theta = plane_angles(y, i[:, None], i[None, :])
    assert torch.equal(theta.diagonal(), torch.zeros(30))
    assert torch.equal(theta, theta.T)
    lifted = torch.cat([y.double(), -torch.ones(30, 1, dtype=torch.float64)], dim=1)
    normals = lifted / lifted.norm(dim=1, keepdim=True)
    reference = torch.arccos((normals @ normals.T).clamp(max=1.0))  # METHODS.md §9 step 3, in float64
    off_diag = ~torch.eye(30, dtype=torch.bool)
    assert torch.allclose(theta.double()[off_diag], reference[off_diag], atol=1e-5)
    # n_0 = (0, -1) and n_1 = (1, -1) / sqrt(2) meet at pi / 4
    pair = plane_angles(torch.tensor([[0.0], [1.0]]), torch.tensor(0), torch.tensor(1))
    assert pair.item() == pytest.approx(math.pi / 4, abs=1e-6)


# ------------------------------------------------------------------------------------------------ solver

def test_1d_two_points_analytic() -> None:
    # boundary (h1 - h2) / 2 must sit at -0.25 so that cell 1 = [-0.5, -0.25] has mass 0.25
    y = torch.tensor([[-1.0], [1.0]])
    nu = torch.tensor([0.25, 0.75])
    result = SemiDiscreteOT(lr=3e-3, tol=1e-4, max_iter=2000, n_samples=4096, max_samples=2**14).solve(y, nu)
    assert result.converged
    assert torch.allclose(result.h, torch.tensor([-0.25, 0.25]), atol=1e-3)


def test_1d_closed_form_nonuniform_weights() -> None:
    gen = torch.Generator().manual_seed(3)
    y = (2 * torch.rand(8, generator=gen) - 1).sort().values[:, None]
    nu = torch.rand(8, generator=gen) + 0.5
    nu = nu / nu.sum()
    result = SemiDiscreteOT(lr=1e-3, tol=1e-4, max_iter=3000, n_samples=4096, max_samples=2**15).solve(y, nu)
    assert result.converged and result.grad_norm < 1e-4
    assert torch.allclose(result.h.double(), exact_heights_1d(y, nu), atol=2e-4)


def test_2d_symmetric_corners_have_zero_heights() -> None:
    y = torch.tensor([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]])
    result = SemiDiscreteOT(lr=1e-2, tol=1e-3, max_iter=500, n_samples=4096).solve(y)
    assert result.converged
    assert result.h.abs().max().item() < 1e-3
    # by symmetry every quadrant has mass 1/4 under an independent estimate too
    quarter = torch.full((4,), 0.25, dtype=torch.float64)
    assert torch.allclose(fresh_mc_masses(y, result.h), quarter, atol=5e-3)


def test_random_50_points_cell_masses_equalise() -> None:
    gen = torch.Generator().manual_seed(0)
    y = 0.3 * torch.randn(50, 2, generator=gen)
    n = y.shape[0]
    result = SemiDiscreteOT(lr=3e-3, tol=5e-3, max_iter=3000, n_samples=4096, max_samples=2**15).solve(y)
    assert result.converged and result.grad_norm < 5e-3
    assert result.coverage == 1.0
    error_start = (fresh_mc_masses(y, torch.zeros(n)) - 1 / n).abs().max().item() * n
    error_end = (fresh_mc_masses(y, result.h) - 1 / n).abs().max().item() * n
    # h = 0 leaves most cells empty (error ~ 1 or more); a solved h gives every cell about 1/n
    assert error_start > 0.9
    assert error_end < 0.35 and error_end < error_start / 3
    norms = result.history["grad_norm"]
    assert len(norms) == result.n_iter and min(norms[-10:]) < norms[0] / 10


def test_windowed_host_checks_return_the_converging_h() -> None:
    # with syncs every 7 iterations the update is frozen on-device at the first ||g|| < tol, so the result
    # must be the one of checking every iteration (no doubling here: patience is out of reach)
    gen = torch.Generator().manual_seed(5)
    y = 0.3 * torch.randn(20, 2, generator=gen)
    results = [
        SemiDiscreteOT(lr=3e-3, tol=1e-2, max_iter=1000, n_samples=2048, max_samples=2048, patience=10**6,
                       check_every=every).solve(y)
        for every in (1, 7)
    ]
    assert results[0].converged and results[1].converged
    assert results[0].n_iter == results[1].n_iter
    assert results[0].n_iter % 7 != 0, "pick a case where convergence falls inside a window"
    assert torch.equal(results[0].h, results[1].h)
    assert results[0].history == results[1].history
    assert results[1].grad_norm == results[1].history["grad_norm"][-1] < 1e-2


def test_sample_count_doubles_on_stagnation_and_is_capped() -> None:
    # 512 QMC points cannot resolve 30 cells to tol 1e-6, so the solver must keep doubling up to the cap
    gen = torch.Generator().manual_seed(4)
    y = 0.3 * torch.randn(30, 2, generator=gen)
    solver = SemiDiscreteOT(lr=3e-3, tol=1e-6, max_iter=400, n_samples=512, max_samples=2048, patience=5)
    result = solver.solve(y)
    counts = result.history["n_samples"]
    assert counts[0] == 512 and max(counts) == 2048 == result.n_samples
    assert all(a <= b for a, b in zip(counts, counts[1:]))
    assert set(counts) == {512, 1024, 2048}
    assert not result.converged and result.n_iter == 400


def test_callback_quiet_mode_and_validation(capsys: pytest.CaptureFixture[str]) -> None:
    y = torch.tensor([[-1.0], [0.0], [1.0]])
    calls: list[tuple[int, float, float]] = []
    solver = SemiDiscreteOT(lr=1e-2, tol=1e-12, max_iter=25, n_samples=256, max_samples=256, check_every=10)
    result = solver.solve(y, on_iter=lambda it, g, cov: calls.append((it, g, cov)), progress=False)
    assert [c[0] for c in calls] == list(range(1, 26))
    assert [c[1] for c in calls] == result.history["grad_norm"]
    assert all(0.0 < c[2] <= 1.0 for c in calls)
    assert capsys.readouterr().out == ""
    SemiDiscreteOT(max_iter=3, n_samples=64, max_samples=64).solve(y, progress=True)  # the rich bar runs
    with pytest.raises(ValueError):
        solver.solve(y, nu=torch.tensor([0.5, 0.6, 0.1]))


# ------------------------------------------------------------------------------------------------ generation

def two_clusters_1d() -> tuple[torch.Tensor, torch.Tensor]:
    """Two clusters at x = -0.5 and x = +0.5 (std 0.05, 50 points each), sorted, with exact OT heights."""
    gen = torch.Generator().manual_seed(0)
    y = torch.cat([-0.5 + 0.05 * torch.randn(50, generator=gen), 0.5 + 0.05 * torch.randn(50, generator=gen)])
    y = y.sort().values[:, None]
    return y, exact_heights_1d(y, torch.full((100,), 0.01)).float()


def test_angle_threshold_removes_mode_mixture() -> None:
    y, h = two_clusters_1d()
    assert (fresh_mc_masses(y, h) - 0.01).abs().max().item() < 2e-3  # the oracle heights are right

    def in_gap(threshold: float, n: int, **kwargs) -> int:
        codes = generate_codes(y, h, n, angle_threshold=threshold, interp="uniform", seed=5, **kwargs)
        assert codes.shape == (n, 1)
        return int((codes.abs() < 0.25).sum())

    # top-2 pairs, every source point kept: cross-cluster pairs are rare (~1e-3) but exist without a threshold
    assert in_gap(math.pi, 16_384, k=2, dedup=False) > 0
    assert in_gap(0.2, 16_384, k=2, dedup=False) == 0
    assert in_gap(0.1, 16_384, k=2, dedup=False) == 0
    # pyOMT's generation setting (top-20, one pair per cell and round), 100 codes per round at most
    assert in_gap(math.pi, 4096, k=20, n_source=1024) > 0
    assert in_gap(0.2, 4096, k=20, n_source=1024) == 0
    # the angles behind it: within-cluster neighbours are nearly parallel, the two clusters are not
    theta = plane_angles(y, torch.arange(100)[:, None], torch.arange(100)[None, :])
    assert theta[:50, :50].median() < 0.1 and theta[:50, 50:].min() > 0.5


def test_pairs_dedup_per_cell_and_fixed_interpolation() -> None:
    y, h = two_clusters_1d()
    pairs = sample_cell_pairs(y, h, 60, angle_threshold=math.pi, k=5, n_source=4096, seed=2)
    assert pairs.shape == (60, 2)
    assert pairs[:, 0].unique().numel() == 60, "at most one pair per cell I0 in a round"
    assert bool((pairs[:, 0] != pairs[:, 1]).all())
    # lam = 1 returns target codes themselves; lam = 0.5 the midpoints of two target codes
    ends = generate_codes(y, h, 500, angle_threshold=math.pi, k=3, interp=1.0, seed=3)
    assert torch.isin(ends[:, 0], y[:, 0]).all()
    mids = generate_codes(y, h, 500, angle_threshold=0.2, k=3, interp=0.5, seed=3)
    all_mids = 0.5 * (y[:, 0][:, None] + y[:, 0][None, :])
    assert (mids[:, 0][:, None] - all_mids.flatten()[None, :]).abs().min(dim=1).values.max() < 1e-6


def test_impossible_threshold_raises_clear_error() -> None:
    y, h = two_clusters_1d()
    with pytest.raises(RuntimeError, match="angle_threshold"):
        generate_codes(y, h, 100, angle_threshold=0.0, k=2, max_rounds=3)


def test_normalize_codes_roundtrip() -> None:
    gen = torch.Generator().manual_seed(6)
    codes = 7.0 + 3.0 * torch.randn(500, 8, generator=gen) * torch.linspace(0.5, 2.0, 8)
    normalized, stats = normalize_codes(codes)
    assert normalized.abs().max().item() == pytest.approx(1.0)
    assert normalized.mean(dim=0).abs().max().item() < 1e-5
    assert torch.allclose(denormalize_codes(normalized, stats), codes, atol=1e-4)
    # isotropic scaling keeps ratios of distances; per_dim fills every coordinate to [-1, 1]
    ratio = torch.cdist(normalized, normalized)[0, 1:] / torch.cdist(codes, codes)[0, 1:]
    assert torch.allclose(ratio, ratio[0].expand_as(ratio), rtol=1e-4)
    per_dim, stats_pd = normalize_codes(codes, mode="per_dim")
    assert torch.allclose(per_dim.abs().amax(dim=0), torch.ones(8))
    assert torch.allclose(denormalize_codes(per_dim, stats_pd), codes, atol=1e-4)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu() -> None:
    gen = torch.Generator().manual_seed(7)
    x = torch.rand(5000, 16, generator=gen) - 0.5
    y = torch.randn(700, 16, generator=gen)
    h = 0.1 * torch.randn(700, generator=gen)
    scores = dense_scores(x, y, h)
    idx = power_cell_argmax(x.cuda(), y.cuda(), h.cuda(), chunk_size=4096).cpu()
    assert torch.allclose(scores.gather(1, idx[:, None])[:, 0], scores.max(dim=1).values, atol=1e-4)
    y2 = 0.3 * torch.randn(50, 2, generator=gen)
    solver = SemiDiscreteOT(lr=3e-3, tol=5e-3, max_iter=3000, n_samples=4096, max_samples=2**15)
    result = solver.solve(y2.cuda())
    assert result.converged and result.h.is_cuda
    assert (fresh_mc_masses(y2, result.h.cpu()) - 1 / 50).abs().max().item() * 50 < 0.35
