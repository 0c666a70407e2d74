"""Robust Sinkhorn (log-stabilised and log-domain) and OT-GAN's minibatch energy distance against oracles.

Oracles: POT (``ot.sinkhorn(..., method="sinkhorn_log")`` and the plain-kernel ``method="sinkhorn"`` run
the same column-then-row updates, so their iterates match ours at any iteration count, converged or not),
scipy's cosine distance, closed-form identities (marginal constraints, envelope theorem, E[L] = 0 for
i.i.d. batches). Every solver test runs both of our methods. eps-scaling (annealing) is checked against
the converged plain solver and POT's ``ot.sinkhorn2``, by iteration counts and by recording its schedule.
METHODS.md §6 and §13.
"""

import functools
import math
import warnings

import numpy as np
import ot
import pytest
import torch
from scipy.spatial.distance import cdist

import otgan_lab.ot.sinkhorn as sinkhorn_package
import otgan_lab.ot.sinkhorn.annealing as annealing_module
import otgan_lab.ot.sinkhorn.kernel as kernel_module
import otgan_lab.ot.sinkhorn.stabilized as stabilized_module
from otgan_lab.ot.energy import cosine_cost, minibatch_energy_distance
from otgan_lab.ot.sinkhorn import entropic_ot_loss, sinkhorn

METHODS = ["stabilized", "log"]


def _problem(n=12, m=9, seed=0):
    """Random float64 problem: cost in [0, 2] (the cosine-cost range) and positive marginals."""
    rng = np.random.default_rng(seed)
    cost = 2.0 * rng.random((n, m))
    a, b = rng.random(n) + 0.2, rng.random(m) + 0.2
    return cost, a / a.sum(), b / b.sum()


def _pot_plan(cost, a, b, eps, n_iters, log=False, method="sinkhorn_log"):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Sinkhorn did not converge" is expected for fixed iterations
        return ot.sinkhorn(a, b, cost, eps, method=method, numItermax=n_iters, stopThr=0.0, log=log)


def _outlier_cosine_cost(n=30, m=24, n_out=3, seed=0):
    """Cosine costs (float64) of points around e1, except ``n_out`` rows around -e1: those rows' costs are
    all > 1.49, so at eps = 0.002 their plain-kernel row exp(-C/eps) is exactly 0 in float64."""
    rng = np.random.default_rng(seed)
    e1 = np.array([1.0, 0.0, 0.0])
    x = e1 + 0.35 * rng.normal(size=(n, 3))
    x[:n_out] = -e1 + 0.1 * rng.normal(size=(n_out, 3))
    y = e1 + 0.25 * rng.normal(size=(m, 3))
    return cdist(x, y, "cosine")


@pytest.fixture
def device_loop_on_cpu(monkeypatch):
    """Run the accelerator code path of the stabilised solver (torch ops, unconditional absorptions, no
    host reads) on CPU."""
    monkeypatch.setattr(stabilized_module, "iterate_cpu", stabilized_module.iterate_device)


@pytest.fixture
def count_calls(monkeypatch):
    """Counts calls of StabilizedKernel methods: returns a dict name -> count."""
    counts = {"absorb": 0, "exact_row_update": 0}
    for name in counts:
        original = getattr(kernel_module.StabilizedKernel, name)

        def wrapper(self, *args, _name=name, _original=original):
            counts[_name] += 1
            return _original(self, *args)

        monkeypatch.setattr(kernel_module.StabilizedKernel, name, wrapper)
    return counts


def _t(x):
    return torch.as_tensor(x, dtype=torch.float64)


# ---------------------------------------------------------------------------------------------- sinkhorn


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("eps", [0.5, 0.05, 0.002])
def test_marginals_float64(eps, method):
    cost, a, b = _problem(seed=2)
    res = sinkhorn(_t(cost), _t(a), _t(b), eps=eps, n_iters=20_000, tol=1e-11, method=method)
    plan = res.plan.numpy()
    assert res.plan.dtype == torch.float64 and plan.shape == (12, 9)
    assert np.abs(plan.sum(1) - a).max() < 1e-11
    assert np.abs(plan.sum(0) - b).max() < 1e-11
    assert (plan >= 0).all()
    assert res.err.item() < 1e-11 and res.n_iters < 20_000 and res.n_iters % 10 == 0


@pytest.mark.parametrize("method", METHODS)
def test_marginals_float32_at_moderate_eps(method):
    cost, _, _ = _problem(n=40, m=30, seed=2)
    res = sinkhorn(torch.tensor(cost, dtype=torch.float32), eps=0.01, n_iters=2000, method=method)  # uniform
    assert res.plan.dtype == torch.float32
    plan = res.plan.double().numpy()
    assert np.abs(plan.sum(1) - 1 / 40).max() < 1e-6
    assert np.abs(plan.sum(0) - 1 / 30).max() < 1e-6


@pytest.mark.parametrize("method", METHODS)
def test_plain_kernel_underflows_but_log_domain_works(method):
    # The reason for the log domain: at eps = 1/500, exp(-C/eps) is exactly 0 in float64 for C > 1.49.
    cost, a, b = _problem(seed=3)
    cost = 1.5 + cost / 4  # cosine costs in [1.5, 2]
    assert np.exp(-cost / 0.002).max() == 0.0
    res = sinkhorn(_t(cost), _t(a), _t(b), eps=0.002, n_iters=500, method=method)
    assert torch.isfinite(res.plan).all() and torch.isfinite(res.f).all() and torch.isfinite(res.g).all()
    np.testing.assert_allclose(res.plan.numpy(), _pot_plan(cost, a, b, 0.002, 500), rtol=0, atol=1e-12)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("eps", [1.0, 0.1, 0.01, 0.002])
@pytest.mark.parametrize("n_iters", [1, 7, 300])
def test_iterates_match_pot_log_sinkhorn(eps, n_iters, method):
    cost, a, b = _problem(n=10, m=7, seed=4)
    plan_pot, log = _pot_plan(cost, a, b, eps, n_iters, log=True)
    res = sinkhorn(_t(cost), _t(a), _t(b), eps=eps, n_iters=n_iters, method=method)
    assert res.n_iters == n_iters
    np.testing.assert_allclose(res.plan.numpy(), plan_pot, rtol=1e-9, atol=1e-14)
    np.testing.assert_allclose(res.cost.item(), (plan_pot * cost).sum(), rtol=1e-10)
    # POT's log-scalings are u = f/eps + log a, v = g/eps + log b (in nats).
    np.testing.assert_allclose(res.f.numpy() / eps + np.log(a), log["log_u"], rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(res.g.numpy() / eps + np.log(b), log["log_v"], rtol=1e-12, atol=1e-9)
    col_err = np.abs(plan_pot.sum(0) - b).max()  # POT's plan has exact rows after its last (row) update
    np.testing.assert_allclose(res.err.item(), col_err, rtol=1e-6, atol=1e-15)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("eps, pot_method", [(0.5, "sinkhorn"), (0.05, "sinkhorn_log"), (0.01, "sinkhorn")])
def test_converged_value_matches_pot_sinkhorn2(eps, pot_method, method):
    cost, a, b = _problem(n=15, m=11, seed=5)
    value_pot = ot.sinkhorn2(a, b, cost, eps, method=pot_method, numItermax=100_000, stopThr=1e-13)
    plan_pot = ot.sinkhorn(a, b, cost, eps, method=pot_method, numItermax=100_000, stopThr=1e-13)
    res = sinkhorn(_t(cost), _t(a), _t(b), eps=eps, n_iters=100_000, tol=1e-13, method=method)
    np.testing.assert_allclose(res.cost.item(), value_pot, rtol=1e-9)
    np.testing.assert_allclose(res.plan.numpy(), plan_pot, rtol=1e-7, atol=1e-12)


@pytest.mark.parametrize("method", METHODS)
def test_tol_stops_at_first_check_below_tol(method):
    cost, a, b = _problem(seed=6)
    tol, eps = 1e-6, 0.05
    res = sinkhorn(_t(cost), _t(a), _t(b), eps=eps, n_iters=10_000, tol=tol, check_every=5, method=method)
    assert res.n_iters % 5 == 0 and res.n_iters < 10_000
    col_err = lambda k: np.abs(_pot_plan(cost, a, b, eps, k).sum(0) - b).max()  # noqa: E731
    assert col_err(res.n_iters) < tol <= col_err(res.n_iters - 5)
    assert res.err.item() < tol


@pytest.mark.parametrize("method", METHODS)
def test_fixed_iterations_without_tol(method):
    cost, _, _ = _problem(seed=7)
    res = sinkhorn(_t(cost), eps=0.5, n_iters=37, method=method)
    assert res.n_iters == 37  # even though converged long before


@pytest.mark.parametrize("method", METHODS)
def test_identical_embeddings_cost_zero(method):
    x = torch.randn(16, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    res = sinkhorn(cosine_cost(x, x), eps=0.002, n_iters=2000, tol=1e-12, method=method)
    assert abs(res.cost.item()) < 1e-10
    np.testing.assert_allclose(res.plan.numpy(), np.eye(16) / 16, rtol=0, atol=1e-12)


def test_symmetry_w_xy_equals_w_yx():
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(10, 5, generator=gen, dtype=torch.float64)
    y = torch.randn(10, 5, generator=gen, dtype=torch.float64) + 0.5
    kw = dict(eps=0.05, n_iters=5000, tol=1e-13)
    xy, yx = sinkhorn(cosine_cost(x, y), **kw), sinkhorn(cosine_cost(y, x), **kw)
    assert max(xy.err.item(), yx.err.item()) < 1e-13  # converged, so the update order does not matter
    np.testing.assert_allclose(xy.cost.item(), yx.cost.item(), rtol=1e-10)
    np.testing.assert_allclose(xy.plan.numpy(), yx.plan.T.numpy(), rtol=1e-8, atol=1e-14)


def test_no_gradient_through_sinkhorn_and_loss_gradient_is_the_plan():
    cost_np, a, b = _problem(n=6, m=5, seed=8)
    cost = _t(cost_np).requires_grad_()
    res = sinkhorn(cost, _t(a), _t(b), eps=0.1, n_iters=5000, tol=1e-13)
    for tensor in (res.plan, res.cost, res.f, res.g, res.err):
        assert not tensor.requires_grad
    loss = entropic_ot_loss(cost, 0.1, a=_t(a), b=_t(b), n_iters=5000, tol=1e-13)
    assert loss.requires_grad
    loss.backward()
    plan_pot = ot.sinkhorn(a, b, cost_np, 0.1, method="sinkhorn_log", numItermax=5000, stopThr=1e-14)
    np.testing.assert_allclose(cost.grad.numpy(), plan_pot, rtol=1e-8, atol=1e-14)
    np.testing.assert_allclose(loss.item(), (plan_pot * cost_np).sum(), rtol=1e-10)


def test_envelope_theorem_for_the_entropic_objective():
    # OT_eps(C) = <P, C> + eps KL(P | a b^T) at the optimum P(C) has dOT_eps/dC_ij = P_ij exactly.
    cost, a, b = _problem(n=6, m=5, seed=9)
    eps, h = 0.5, 1e-5

    def objective(c):
        plan = sinkhorn(_t(c), _t(a), _t(b), eps=eps, n_iters=5000, tol=1e-15).plan.numpy()
        return (plan * c).sum() + eps * (plan * np.log(plan / np.outer(a, b))).sum()

    plan = sinkhorn(_t(cost), _t(a), _t(b), eps=eps, n_iters=5000, tol=1e-15).plan.numpy()
    assert plan.min() > 1e-4  # every entry carries mass, so a relative check is meaningful
    for i, j in [(0, 0), (2, 3), (5, 4)]:
        bump = np.zeros_like(cost)
        bump[i, j] = h
        derivative = (objective(cost + bump) - objective(cost - bump)) / (2 * h)
        np.testing.assert_allclose(derivative, plan[i, j], rtol=1e-5)


@pytest.mark.parametrize("method", METHODS)
def test_autocast_bf16_input_computes_in_fp32(method):
    cost, a, b = _problem(n=20, m=16, seed=10)
    cost_bf16 = torch.tensor(cost, dtype=torch.bfloat16)
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        res = sinkhorn(cost_bf16, eps=0.05, n_iters=200, method=method)
        loss = entropic_ot_loss(cost_bf16.float().requires_grad_(), 0.05, n_iters=200, method=method)
    assert res.plan.dtype == res.cost.dtype == res.f.dtype == torch.float32 and loss.dtype == torch.float32
    exact_cost = cost_bf16.double().numpy()  # the bf16 values, exactly
    plan_pot = _pot_plan(exact_cost, np.full(20, 1 / 20), np.full(16, 1 / 16), 0.05, 200)
    np.testing.assert_allclose(res.plan.double().numpy(), plan_pot, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(res.cost.item(), (plan_pot * exact_cost).sum(), rtol=1e-5)


@pytest.mark.parametrize("method", METHODS)
def test_batched_equals_per_problem_pot(method):
    rng = np.random.default_rng(11)
    costs = 2 * rng.random((2, 3, 8, 6))  # leading batch dims (2, 3)
    a = rng.random((2, 3, 8)) + 0.1
    a /= a.sum(-1, keepdims=True)
    b = np.full(6, 1 / 6)  # shared by all problems
    res = sinkhorn(_t(costs), _t(a), _t(b), eps=0.05, n_iters=40, method=method)
    assert res.plan.shape == (2, 3, 8, 6) and res.cost.shape == res.err.shape == (2, 3)
    assert res.f.shape == (2, 3, 8) and res.g.shape == (2, 3, 6)
    for idx in np.ndindex(2, 3):
        plan_pot = _pot_plan(costs[idx], a[idx], b, 0.05, 40)
        np.testing.assert_allclose(res.plan[idx].numpy(), plan_pot, rtol=1e-9, atol=1e-15)
        np.testing.assert_allclose(res.cost[idx].item(), (plan_pot * costs[idx]).sum(), rtol=1e-10)


# ------------------------------------------------------------------------- stabilised solver specifics


def test_auto_is_stabilized_and_matches_log():
    cost, a, b = _problem(n=30, m=20, seed=17)
    args = (_t(cost), _t(a), _t(b))
    auto, stab, log = (sinkhorn(*args, eps=0.01, n_iters=50, method=m) for m in ("auto", "stabilized", "log"))
    assert torch.equal(auto.plan, stab.plan)
    np.testing.assert_allclose(stab.plan.numpy(), log.plan.numpy(), rtol=1e-10, atol=1e-15)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("eps", [1.0, 0.1, 0.05, 0.01])
@pytest.mark.parametrize("n_iters", [1, 7, 100])
def test_iterates_match_pot_plain_sinkhorn(eps, n_iters, method):
    # POT's default plain-kernel Sinkhorn (u starts at 1/n, not 1: the plan is the same after one
    # iteration) computes the same iterates wherever its kernel exp(-C/eps) does not underflow.
    cost, a, b = _problem(n=10, m=7, seed=4)
    plan_pot = _pot_plan(cost, a, b, eps, n_iters, method="sinkhorn")
    res = sinkhorn(_t(cost), _t(a), _t(b), eps=eps, n_iters=n_iters, method=method)
    np.testing.assert_allclose(res.plan.numpy(), plan_pot, rtol=1e-9, atol=1e-14)
    np.testing.assert_allclose(res.cost.item(), (plan_pot * cost).sum(), rtol=1e-10)


@pytest.mark.parametrize("transpose", [False, True], ids=["rows", "columns"])
@pytest.mark.parametrize("n_iters", [100, 500])
def test_stabilized_where_plain_kernel_rows_underflow(n_iters, transpose, count_calls):
    # eps = 1/500 with cosine costs in [0, 2]: a few rows (or columns) have every cost > 1.49, so their
    # plain-kernel row is exactly 0 in float64 and plain Sinkhorn would divide by 0. The stabilised solver
    # must match float64 log-domain POT to the same tolerance as our log-domain solver does.
    cost = _outlier_cosine_cost(seed=18)
    cost = cost.T.copy() if transpose else cost
    axis = 0 if transpose else 1
    assert (np.exp(-cost / 0.002).sum(axis) == 0).sum() == 3
    n, m = cost.shape
    a, b = np.full(n, 1 / n), np.full(m, 1 / m)
    plan_pot, log = _pot_plan(cost, a, b, 0.002, n_iters, log=True)
    res = sinkhorn(_t(cost), eps=0.002, n_iters=n_iters, method="stabilized")
    assert torch.isfinite(res.plan).all() and torch.isfinite(res.f).all() and torch.isfinite(res.g).all()
    np.testing.assert_allclose(res.plan.numpy(), plan_pot, rtol=1e-9, atol=1e-14)
    np.testing.assert_allclose(res.f.numpy() / 0.002 + np.log(a), log["log_u"], rtol=1e-12, atol=1e-8)
    np.testing.assert_allclose(res.g.numpy() / 0.002 + np.log(b), log["log_v"], rtol=1e-12, atol=1e-8)
    # An outlier row defeats the one-exp-pass start on CPU, so that half-step was redone in the log domain.
    assert count_calls["exact_row_update"] == (0 if transpose else 1)

    # float32 (range 2^+-126): the scalings outgrow their range at this eps and get absorbed.
    count_calls["absorb"] = 0
    cost32 = torch.tensor(cost, dtype=torch.float32)
    plan_pot32 = _pot_plan(cost32.double().numpy(), a, b, 0.002, n_iters)  # the float32 costs, exactly
    res32 = sinkhorn(cost32, eps=0.002, n_iters=n_iters, method="stabilized")
    np.testing.assert_allclose(res32.plan.double().numpy(), plan_pot32, rtol=0, atol=2e-7)
    assert count_calls["absorb"] >= 1


@pytest.mark.parametrize("seed", [0, 1])
def test_stabilized_random_cosine_costs_small_eps(seed, count_calls):
    # OT-GAN's regime: random cosine costs at eps = 0.002, float64 and float32 against float64 POT.
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(48, 6, generator=gen, dtype=torch.float64)
    y = torch.randn(40, 6, generator=gen, dtype=torch.float64) + 0.3
    cost = cosine_cost(x, y)
    assert cost.max() > 1.49  # entries whose plain kernel underflows
    a, b = np.full(48, 1 / 48), np.full(40, 1 / 40)
    for n_iters in (100, 500):
        plan_pot = _pot_plan(cost.numpy(), a, b, 0.002, n_iters)
        res = sinkhorn(cost, eps=0.002, n_iters=n_iters)
        np.testing.assert_allclose(res.plan.numpy(), plan_pot, rtol=1e-9, atol=1e-14)
        cost32 = cost.float()
        plan_pot32 = _pot_plan(cost32.double().numpy(), a, b, 0.002, n_iters)  # the float32 costs, exactly
        res32 = sinkhorn(cost32, eps=0.002, n_iters=n_iters)
        assert res32.plan.dtype == torch.float32
        np.testing.assert_allclose(res32.plan.double().numpy(), plan_pot32, rtol=0, atol=2e-7)
    assert count_calls["absorb"] >= 1  # float32's narrow range forces absorptions at this eps


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("eps", [0.05, 0.002])
def test_accelerator_code_path_on_cpu(eps, dtype, device_loop_on_cpu, count_calls):
    # The torch loop used off-CPU: exact first iteration, unconditional absorptions on a fixed cadence.
    cost = _outlier_cosine_cost(n=20, m=16, n_out=2, seed=19)
    n, m = cost.shape
    cost_in = torch.tensor(cost, dtype=dtype)
    exact = cost_in.double().numpy()
    plan_pot = _pot_plan(exact, np.full(n, 1 / n), np.full(m, 1 / m), eps, 60)
    res = sinkhorn(cost_in, eps=eps, n_iters=60)
    rtol, atol = (1e-9, 1e-14) if dtype == torch.float64 else (0, 2e-7)
    np.testing.assert_allclose(res.plan.double().numpy(), plan_pot, rtol=rtol, atol=atol)
    beta = math.log2(20)  # growth bound for uniform marginals: every floor(limit / beta) iterations
    every = int(kernel_module.STAB_LIMIT[dtype] / beta)
    assert count_calls["absorb"] == len(range(1 + every, 60, every))
    # tol: the error is read every check_every iterations (the only host reads of that path)
    res_tol = sinkhorn(cost_in, eps=eps, n_iters=10_000, tol=1e-4, check_every=5)
    assert res_tol.n_iters % 5 == 0 and res_tol.n_iters < 10_000 and res_tol.err.item() < 1e-4


@pytest.mark.parametrize("absorb_every", [1, 7])
def test_fixed_absorption_cadence(absorb_every, count_calls):
    cost, a, b = _problem(n=12, m=9, seed=20)
    plan_pot = _pot_plan(cost, a, b, 0.01, 50)
    res = sinkhorn(_t(cost), _t(a), _t(b), eps=0.01, n_iters=50, absorb_every=absorb_every)
    np.testing.assert_allclose(res.plan.numpy(), plan_pot, rtol=1e-9, atol=1e-14)
    assert count_calls["absorb"] == len(range(1, 50, absorb_every))


def test_rejects_bad_arguments():
    with pytest.raises(ValueError):
        sinkhorn(torch.rand(3, 3), eps=0.0)
    with pytest.raises(ValueError):
        sinkhorn(torch.rand(3, 3), eps=0.1, n_iters=0)
    with pytest.raises(ValueError):
        sinkhorn(torch.rand(3, 3), eps=0.1, method="plain")
    with pytest.raises(ValueError):
        sinkhorn(torch.rand(3, 3), eps=0.1, absorb_every=0)
    for ratio in (0.0, 1.0, -0.5, 2.0):
        with pytest.raises(ValueError, match="eps_scaling"):
            sinkhorn(torch.rand(3, 3), eps=0.1, eps_scaling=ratio)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("method", METHODS)
def test_no_host_sync_without_tol_on_cuda(method):
    cost = torch.rand(4, 64, 48, device="cuda")
    torch.cuda.set_sync_debug_mode("error")
    try:
        res = sinkhorn(cost, eps=0.01, n_iters=50, method=method)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    plan_pot = _pot_plan(cost[0].double().cpu().numpy(), np.full(64, 1 / 64), np.full(48, 1 / 48), 0.01, 50)
    np.testing.assert_allclose(res.plan[0].double().cpu().numpy(), plan_pot, rtol=1e-4, atol=1e-7)


# ---------------------------------------------------------------------------------------------- ε-scaling


def _cost_kind(kind, n, m, seed):
    """Random float64 costs: cosine distances (range <= 2) or squared Euclidean distances (range ~ 10)."""
    rng = np.random.default_rng(seed)
    x, y = rng.normal(size=(n, 3)), rng.normal(size=(m, 3)) + 0.4
    return cdist(x, y, "cosine") if kind == "cosine" else cdist(x, y, "sqeuclidean")


def _marginals(kind, n, m, seed):
    if kind == "uniform":
        return np.full(n, 1 / n), np.full(m, 1 / m)
    rng = np.random.default_rng(seed)
    a, b = rng.random(n) + 0.1, rng.random(m) + 0.1
    return a / a.sum(), b / b.sum()


@functools.lru_cache
def _pot_converged(kind, eps, marginals, tol):
    """POT's log-domain ``ot.sinkhorn2`` solved to ``tol`` (float64): (cost, a, b, plan, value)."""
    n, m = 40, 30
    cost, (a, b) = _cost_kind(kind, n, m, seed=21), _marginals(marginals, n, m, seed=22)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        value, log = ot.sinkhorn2(a, b, cost, eps, method="sinkhorn_log", numItermax=100_000, stopThr=tol,
                                  log=True)
    plan = np.exp(log["log_u"][:, None] - cost / eps + log["log_v"][None, :])  # POT's own plan formula
    return cost, a, b, plan, float(value)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("marginals", ["uniform", "unequal"])
@pytest.mark.parametrize("kind, eps", [("cosine", 0.01), ("sqeuclidean", 0.05)])
def test_eps_scaling_gives_the_plain_and_pot_solution(kind, eps, marginals, method):
    # Converged to tol, the annealed solve is the same problem's solution: same plan, value and potentials
    # (up to the constant shift f + c, g - c) as our plain solver and POT's log-domain solver at ``eps``
    # (eps / cost range ~ 0.005 and 0.003: seven and nine stages).
    tol = 1e-10
    cost, a, b, plan_pot, value_pot = _pot_converged(kind, eps, marginals, tol / 10)
    args = (_t(cost), _t(a), _t(b))
    plain = sinkhorn(*args, eps=eps, n_iters=100_000, tol=tol, method=method)
    scaled = sinkhorn(*args, eps=eps, n_iters=100_000, tol=tol, method=method, eps_scaling=0.5)
    assert scaled.err.item() < tol and plain.err.item() < tol
    np.testing.assert_allclose(np.abs(plan_pot.sum(0) - b).max(), 0, atol=tol)  # POT converged as well
    for reference in (plain.plan.numpy(), plan_pot):
        np.testing.assert_allclose(scaled.plan.numpy(), reference, rtol=0, atol=1e-9)
    np.testing.assert_allclose(scaled.cost.item(), plain.cost.item(), rtol=1e-8)
    np.testing.assert_allclose(scaled.cost.item(), value_pot, rtol=1e-8)
    shift = (scaled.f - plain.f).mean()
    np.testing.assert_allclose(scaled.f.numpy(), (plain.f + shift).numpy(), rtol=0, atol=1e-7)
    np.testing.assert_allclose(scaled.g.numpy(), (plain.g - shift).numpy(), rtol=0, atol=1e-7)


def test_eps_scaling_batched_and_on_the_accelerator_code_path(device_loop_on_cpu):
    # One schedule for the whole batch (from its largest cost range); float32 as OT-GAN runs it.
    costs = np.stack([_cost_kind("cosine", 24, 20, seed=s) for s in (23, 24, 25)])
    costs[1] *= 0.25  # a smaller range: its first stages are coarser than it needs, still the same answer
    res = sinkhorn(torch.tensor(costs, dtype=torch.float32), eps=0.01, n_iters=20_000, tol=1e-6,
                   eps_scaling=0.5)
    assert res.plan.dtype == torch.float32 and (res.err < 1e-6).all()
    # The potentials stay on the cost's scale, not the first stage's eps_0 log n (~7 here): float32 holds
    # f / eps in bits, and that offset cost 256 x 256 plans at eps = 0.002 8x their accuracy.
    cost_range = costs.max() - costs.min()
    assert res.f.abs().max() < cost_range and res.g.abs().max() < 2 * cost_range
    for k in range(3):
        plan = sinkhorn(torch.tensor(costs[k]), eps=0.01, n_iters=20_000, tol=1e-9).plan
        np.testing.assert_allclose(res.plan[k].double().numpy(), plan.numpy(), rtol=0, atol=1e-5)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("seed", [26, 27])
def test_eps_scaling_needs_fewer_iterations_at_small_eps(seed, method):
    # Iteration counts, not time, at OT-GAN's tolerance (5 % of a sample's mass 1/n): at eps = range / 1000
    # the plain solver spends most of its iterations on the transient that annealing removes (seen: 1160-1300
    # iterations against 110-210).
    rng = np.random.default_rng(seed)
    cost = _t(cdist(rng.normal(size=(100, 2)), rng.normal(size=(90, 2)) + 0.4, "cosine"))
    kw = dict(eps=0.002, n_iters=100_000, tol=0.05 / 100, method=method)
    plain, scaled = sinkhorn(cost, **kw), sinkhorn(cost, eps_scaling=0.5, **kw)
    assert scaled.err.item() < 0.05 / 100
    assert scaled.n_iters < 0.5 * plain.n_iters, (scaled.n_iters, plain.n_iters)


def test_eps_schedule_is_geometric_from_the_cost_range_down_to_eps():
    schedule = annealing_module.eps_schedule(2.0, 0.01, 0.5)
    assert schedule[0] == 2.0 and schedule[-1] == 0.01
    np.testing.assert_allclose(np.divide(schedule[1:-1], schedule[:-2]), 0.5)
    assert min(schedule[:-1]) > 0.01 >= 0.5 * min(schedule[:-1])  # no stage below eps, none missing above
    assert annealing_module.eps_schedule(0.005, 0.01, 0.5) == [0.01]  # already coarse enough: no annealing
    assert annealing_module.eps_schedule(0.0, 0.01, 0.5) == [0.01]  # constant cost


def test_eps_scaling_runs_the_schedule_and_ends_at_eps(monkeypatch):
    # Records each stage: eps from the cost range down to the target, a warm start from the second stage on,
    # at most STAGE_ITERS iterations before the last stage, and the iterations of every stage counted.
    calls = []
    solve = sinkhorn_package.solve_stabilized

    def recording(cost, log2_a, log2_b, eps, n_iters, tol, check_every, absorb_every, uniform, u0):
        out = solve(cost, log2_a, log2_b, eps, n_iters, tol, check_every, absorb_every, uniform, u0)
        calls.append((eps, n_iters, tol, u0 is not None, out[3]))
        return out

    monkeypatch.setattr(sinkhorn_package, "solve_stabilized", recording)
    cost = _cost_kind("cosine", 20, 16, seed=27)
    cost_range = cost.max() - cost.min()
    res = sinkhorn(_t(cost), eps=0.01, n_iters=10_000, tol=1e-8, eps_scaling=0.5)
    epss, budgets, tols, warm, done = zip(*calls)
    assert list(epss) == annealing_module.eps_schedule(float(cost_range), 0.01, 0.5)
    assert len(epss) == 1 + math.ceil(math.log(0.01 / cost_range, 0.5))
    assert max(budgets[:-1]) == annealing_module.STAGE_ITERS and tols == (1e-8,) * len(calls)
    assert warm == (False,) + (True,) * (len(calls) - 1)
    assert res.n_iters == sum(done) and res.err.item() < 1e-8
    # Fixed budgets (tol None): the stages before the last take at most half of it, the last stage runs at
    # eps, even when the budget is smaller than the schedule.
    for n_iters in (100, 12):
        calls.clear()
        res = sinkhorn(_t(cost), eps=0.01, n_iters=n_iters, eps_scaling=0.5)
        epss, _, tols, _, done = zip(*calls)
        assert res.n_iters == sum(done) == n_iters and epss[-1] == 0.01 and tols == (None,) * len(calls)
        assert sum(done[:-1]) <= max(n_iters // 2, len(calls) - 1)
        np.testing.assert_allclose(res.plan.sum(-1).numpy(), 1 / 20, rtol=1e-12)  # after a row update at eps


# ------------------------------------------------------------------------------------------------ energy


def test_cosine_cost_matches_scipy():
    gen = torch.Generator().manual_seed(12)
    u = torch.randn(2, 7, 5, generator=gen, dtype=torch.float64)
    v = torch.randn(2, 4, 5, generator=gen, dtype=torch.float64)
    cost = cosine_cost(u, v)
    assert cost.shape == (2, 7, 4)
    for k in range(2):
        np.testing.assert_allclose(cost[k].numpy(), cdist(u[k].numpy(), v[k].numpy(), "cosine"), atol=1e-12)
    zero = torch.zeros(1, 5, dtype=torch.float64)
    np.testing.assert_allclose(cosine_cost(zero, v[0]).numpy(), 1.0)  # 1 - 0 / max(0, 1e-8)


def _pot_energy(x, x2, y, y2, eps):
    """L from POT's converged sharp Sinkhorn values on scipy cosine costs (all numpy, float64)."""

    def w(p, q):
        cost = cdist(p, q, "cosine")
        return ot.sinkhorn2(
            np.full(len(p), 1 / len(p)),
            np.full(len(q), 1 / len(q)),
            cost,
            eps,
            numItermax=20_000,
            stopThr=1e-14,
        )

    return w(x, y) + w(x, y2) + w(x2, y) + w(x2, y2) - 2 * w(x, x2) - 2 * w(y, y2)


@pytest.mark.parametrize("sizes", [(8, 8), (6, 5)], ids=["equal", "unequal"])
def test_energy_distance_matches_pot(sizes):
    rng = np.random.default_rng(13)
    kx, ky = sizes
    x, x2 = rng.normal(size=(kx, 4)), rng.normal(size=(kx, 4))
    y, y2 = rng.normal(size=(ky, 4)) + 1.0, rng.normal(size=(ky, 4)) + 1.0
    loss = minibatch_energy_distance(_t(x), _t(x2), _t(y), _t(y2), eps=0.1, n_iters=20_000, tol=1e-14)
    np.testing.assert_allclose(loss.item(), _pot_energy(x, x2, y, y2, 0.1), rtol=1e-8)


def test_energy_gradient_flows_into_all_four_embeddings():
    # Oracle: with the POT plans held fixed, autograd of sum_k w_k <P_k, C_k> through a hand-written cosine
    # cost gives the envelope gradient; ours must equal it (repulsive -2 W(Y, Y') term included).
    rng = np.random.default_rng(14)
    arrays = [rng.normal(size=(7, 3)) + shift for shift in (0.0, 0.0, 0.7, 0.7)]
    ours = [_t(arr).requires_grad_() for arr in arrays]
    minibatch_energy_distance(*ours, eps=0.1, n_iters=20_000, tol=1e-14).backward()

    ref = [_t(arr).requires_grad_() for arr in arrays]
    total = 0.0
    for i, j, weight in [(0, 2, 1), (0, 3, 1), (1, 2, 1), (1, 3, 1), (0, 1, -2), (2, 3, -2)]:
        p, q = ref[i], ref[j]
        cost = 1 - (p @ q.T) / (p.norm(dim=1)[:, None] * q.norm(dim=1)[None, :])
        plan = ot.sinkhorn(
            np.full(7, 1 / 7),
            np.full(7, 1 / 7),
            cost.detach().numpy(),
            0.1,
            numItermax=20_000,
            stopThr=1e-14,
        )
        total = total + weight * (_t(plan) * cost).sum()
    total.backward()
    for mine, expected in zip(ours, ref):
        assert mine.grad.abs().max() > 1e-3  # every input gets a gradient
        np.testing.assert_allclose(mine.grad.numpy(), expected.grad.numpy(), rtol=1e-6, atol=1e-10)


def test_energy_distance_unbiased_for_iid_batches_and_positive_under_shift():
    # With X, X', Y, Y' i.i.d. every W term has the same expectation, so E[L] = 0 exactly. 300 replicate
    # draws go through one batched call: embeddings (R, K, d).
    gen = torch.Generator().manual_seed(15)
    reps, k, d = 300, 8, 4
    mean = torch.tensor([1.0, 0.5, 0.0, 0.0])

    def draw(shift):
        return torch.randn(reps, k, d, generator=gen) + mean + shift

    same = minibatch_energy_distance(draw(0), draw(0), draw(0), draw(0), eps=0.1, n_iters=100)
    assert same.shape == (reps,)
    assert abs(same.mean().item()) < 3 * same.std().item() / math.sqrt(reps)
    assert (same < 0).any()  # a single draw can be negative; only the mean is ~0

    other = torch.tensor([-1.0, 1.0, 0.0, 0.0])
    shifted = minibatch_energy_distance(draw(0), draw(0), draw(other), draw(other), eps=0.1, n_iters=100)
    assert shifted.mean().item() > 10 * shifted.std().item() / math.sqrt(reps)


def test_energy_distance_under_bf16_autocast_is_fp32():
    gen = torch.Generator().manual_seed(16)
    embs = [torch.randn(8, 16, generator=gen).requires_grad_() for _ in range(4)]
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        loss = minibatch_energy_distance(*[e.bfloat16() for e in embs], eps=0.002, n_iters=100)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    loss.backward()
    assert all(torch.isfinite(e.grad).all() and e.grad.abs().max() > 0 for e in embs)
