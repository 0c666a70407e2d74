"""Benchmark: time to a marginal tolerance for otgan_lab's Sinkhorn (plain and eps-scaled), POT and GeomLoss.

One n x n problem (cosine distances of random points, values in [0, 2]), one eps, one tolerance on the
max-norm marginal error max(|P 1 - a|, |P^T 1 - b|). Solvers:
* otgan_lab ``sinkhorn`` (log-stabilised), plain and with ``eps_scaling`` (stops at the first check with
  error < tol);
* POT ``ot.sinkhorn`` with method="sinkhorn" (plain kernel) and "sinkhorn_log", numpy, stopThr = tol (POT
  stops on the 2-norm of its column error, which bounds the max-norm);
* GeomLoss ``geomloss.ot.solve`` (symmetric Sinkhorn with eps-annealing from the cost range down to eps in
  ``max_iter`` steps; no tolerance, so a ladder of max_iter values). Optional: ``pip install geomloss``;
  skipped with a note when it is missing.
Each row shows the median wall and CPU time (process_time: excludes time spent waiting for a core, which
dominates the noise on a shared machine), iterations, marginal error, and the distance of the value and the
plan to a reference (ours, solved to tol / 1000). The second table compares at equal accuracy: for each
GeomLoss max_iter, ours run to the error GeomLoss reached, with time ratios GeomLoss / ours.

Solvers take turns in rounds (a change in machine load hits all alike); each stops after --repeat timed
calls or --budget seconds. The load average is printed before and after.

    OMP_NUM_THREADS=1 python scripts/bench_sinkhorn.py [--n 500 --eps 0.01 --tol 1e-6 --scaling 0.5]

Threads default to 1 for torch and numpy: on a shared 2-core machine a 2-thread OpenMP pool that competes
with other processes ran ~8x slower than one thread, which would measure the neighbours.
"""

import argparse
import os
import statistics
import time
import warnings


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--dim", type=int, default=2, help="dimension of the random points")
    parser.add_argument("--eps", type=float, default=0.01)
    parser.add_argument("--tol", type=float, default=1e-6)
    parser.add_argument("--scaling", type=float, default=0.5, help="our eps_scaling ratio")
    parser.add_argument("--dtype", choices=["float64", "float32"], default="float64")
    parser.add_argument("--geomloss-iters", default="10,20,40,80,160,320,640",
                        help="GeomLoss max_iter ladder")
    parser.add_argument("--repeat", type=int, default=3, help="timed calls per solver")
    parser.add_argument("--budget", type=float, default=6.0, help="stop timing a solver after this many s")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for torch AND numpy's BLAS")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    # numpy's BLAS reads its thread count at import time: pin it to torch's so the comparison is fair.
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    import numpy as np
    import ot
    import torch

    from otgan_lab.ot.energy import cosine_cost
    from otgan_lab.ot.sinkhorn import sinkhorn

    try:
        from geomloss import ot as geomloss_ot
    except ImportError:
        geomloss_ot = None
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", message="Sinkhorn did not converge")
    load_before = os.getloadavg()

    gen = torch.Generator().manual_seed(args.seed)
    x = torch.randn(args.n, args.dim, generator=gen, dtype=torch.float64)
    y = torch.randn(args.n, args.dim, generator=gen, dtype=torch.float64) + 0.5
    cost = cosine_cost(x, y).to(getattr(torch, args.dtype))  # the one input, in [0, 2]
    cost_np = cost.numpy()
    marginal = np.full(args.n, 1.0 / args.n, dtype=cost_np.dtype)
    eps, tol = args.eps, args.tol
    reference = sinkhorn(cost.double(), eps=eps, n_iters=1_000_000, tol=tol / 1000, eps_scaling=args.scaling)
    plan_ref, value_ref = reference.plan.numpy(), reference.cost.item()

    def ours(tol_k: float, scaling: float | None):
        def call():
            res = sinkhorn(cost, eps=eps, n_iters=1_000_000, tol=tol_k, eps_scaling=scaling)
            return res.plan.double().numpy(), res.n_iters

        return call

    def pot(method: str):
        def call():
            plan, log = ot.sinkhorn(marginal, marginal, cost_np, eps, method=method, numItermax=1_000_000,
                                    stopThr=tol, log=True)
            return plan.astype(np.float64), log["niter"]

        return call

    def geomloss(max_iter: int):
        def call():
            return geomloss_ot.solve(cost, reg=eps, max_iter=max_iter).plan.double().numpy(), max_iter

        return call

    solvers = {
        "otgan_lab sinkhorn": ours(tol, None),
        f"otgan_lab sinkhorn, eps_scaling={args.scaling}": ours(tol, args.scaling),
        "POT ot.sinkhorn (numpy, standard)": pot("sinkhorn"),
        "POT ot.sinkhorn (numpy, sinkhorn_log)": pot("sinkhorn_log"),
    }
    stats = {name: measure(call) for name, call in solvers.items()}  # a first, untimed call: accuracy

    # GeomLoss: climb the max_iter ladder until its error is below tol or one call takes over --budget s.
    ladder = []
    if geomloss_ot is None:
        print("GeomLoss skipped: not installed (pip install geomloss)")
    else:
        for max_iter in (int(k) for k in args.geomloss_iters.split(",")):
            name = f"GeomLoss ot.solve, max_iter={max_iter}"
            solvers[name] = geomloss(max_iter)
            stats[name] = measure(solvers[name])
            ladder.append(name)
            if stats[name]["err"] < tol or stats[name]["first_s"] > args.budget:
                break
        # equal accuracy: ours run to the error each GeomLoss setting reached
        for name in ladder:
            for scaling in (None, args.scaling):
                ours_name = f"  otgan_lab to err {stats[name]['err']:.1e}, eps_scaling={scaling}"
                solvers[ours_name] = ours(stats[name]["err"], scaling)
                stats[ours_name] = measure(solvers[ours_name])
    time_in_rounds(solvers, stats, args.repeat, args.budget)

    print(
        f"n={args.n} dim={args.dim} eps={eps} tol={tol} dtype={args.dtype} threads={args.threads} "
        f"repeat<={args.repeat}; load avg 1/5/15 min before: " + " ".join(f"{v:.2f}" for v in load_before)
        + ", after: " + " ".join(f"{v:.2f}" for v in os.getloadavg())
    )
    header = f"{'solver':46s} {'calls':>5s} {'wall ms':>9s} {'cpu ms':>9s} {'iters':>7s} {'marg. err':>9s}"
    print(header + f" {'|V-V*|':>9s} {'max|P-P*|':>9s}")
    for name in [n for n in solvers if not n.startswith("  ")]:
        s = stats[name]
        diff = np.abs(s["plan"] - plan_ref).max()
        value_diff = abs(float((s["plan"] * cost_np).sum()) - value_ref)
        print(f"{name:46s} {len(s['wall']):5d} {s['wall_ms']:9.2f} {s['cpu_ms']:9.2f} {s['iters']:7d} "
              f"{s['err']:9.1e} {value_diff:9.1e} {diff:9.1e}")
    print("(V*, P*: ours solved to tol / 1000. POT stops on the 2-norm of its column error, a stricter test;"
          " its 'standard' plain kernel exp(-C/eps) underflows at small eps / range.)")
    if ladder:
        print("\nEqual accuracy: ours run to the marginal error each GeomLoss max_iter reached;"
              " ratio = GeomLoss time / ours (> 1: ours faster), CPU time [wall]")
        columns = f"{'it':>15s} {'cpu ms':>8s} {'ratio':>16s}"
        print(f"{'GeomLoss max_iter':>17s} {'err':>8s} {'cpu ms':>8s} | ours plain:{columns[11:]} | "
              f"eps-scaled:{columns[11:]}")
        for name in ladder:
            g = stats[name]
            row = f"{g['iters']:17d} {g['err']:8.1e} {g['cpu_ms']:8.1f}"
            for scaling in (None, args.scaling):
                o = stats[f"  otgan_lab to err {g['err']:.1e}, eps_scaling={scaling}"]
                ratio = f"{g['cpu_ms'] / o['cpu_ms']:.1f}x [{g['wall_ms'] / o['wall_ms']:.1f}x]"
                row += f" | {o['iters']:15d} {o['cpu_ms']:8.1f} {ratio:>16s}"
            print(row)


def measure(call) -> dict:
    """One untimed call: plan, iterations, marginal error and how long it took (warms the solver up)."""
    start_wall, start_cpu = time.perf_counter(), time.process_time()
    plan, iters = call()
    first_s, first_cpu_s = time.perf_counter() - start_wall, time.process_time() - start_cpu
    n, m = plan.shape
    err = max(abs(plan.sum(1) - 1.0 / n).max(), abs(plan.sum(0) - 1.0 / m).max())
    return {"plan": plan, "iters": int(iters), "err": float(err), "first_s": first_s,
            "first_cpu_s": first_cpu_s, "wall": [], "cpu": []}


def time_in_rounds(solvers: dict, stats: dict, repeat: int, budget: float) -> None:
    """Median wall/CPU ms per solver; solvers take turns, each until ``repeat`` calls or ``budget`` s."""
    active = [name for name in solvers if stats[name]["first_s"] <= budget]
    for name in solvers:
        if name not in active:  # one call already took the whole budget: report that one
            stats[name]["wall"], stats[name]["cpu"] = [stats[name]["first_s"]], [stats[name]["first_cpu_s"]]
    while active:
        for name in list(active):
            start_wall, start_cpu = time.perf_counter(), time.process_time()
            solvers[name]()
            stats[name]["wall"].append(time.perf_counter() - start_wall)
            stats[name]["cpu"].append(time.process_time() - start_cpu)
            if len(stats[name]["wall"]) >= repeat or sum(stats[name]["wall"]) >= budget:
                active.remove(name)
    for s in stats.values():
        s["wall_ms"], s["cpu_ms"] = 1e3 * statistics.median(s["wall"]), 1e3 * statistics.median(s["cpu"])


if __name__ == "__main__":
    main()
