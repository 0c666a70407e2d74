"""Benchmark: otgan_lab's Sinkhorn solvers against POT's ot.sinkhorn2 on one n x n problem.

Every solver gets the same cost (cosine distances of random 2-D points, values in [0, 2]), the same eps and
the same number of iterations (POT with stopThr=0 so it never stops early). Ours: method="stabilized" (the
default: log-stabilised scaling, two mat-vecs per iteration) and method="log" (log-sum-exp half-steps), in
float64 and float32. POT: its default plain-kernel 'sinkhorn' (fast, but exp(-C/eps) underflows at OT-GAN's
eps = 0.002) and its log-domain 'sinkhorn_log', on numpy float64 (POT's default) and float32, and on its
torch backend. All solvers compute the same iterates, so the script prints each one's value <P, C>, its
marginal error and its largest plan difference to POT's float64 log-domain plan to show that they agree
(the plain kernel's plans break down where exp(-C/eps) underflows, e.g. --eps 0.002 in float32).

Timing: the solvers take turns in rounds, so a change in machine load hits all of them alike. In a round
each solver runs --block consecutive calls and the first is not timed: the others measure its steady state
when called repeatedly (as in training), with caches and the memory allocator warmed by its own previous
call rather than disturbed by another solver's (calling them strictly alternately made our solver's plan
buffer page-fault in anew on every call, because POT's frees let the allocator return memory to the OS).
Each solver reports its median wall time and median CPU time (process_time: user + system, excluding time
spent waiting for a core, which dominates the wall-time noise on a shared machine). A solver stops being
timed after --repeat timed calls or once they add up to --budget seconds; one whose untimed first call
took over 0.5 s (POT's numpy sinkhorn_log: seconds per call) runs one timed call per round instead of a
block. The load average is printed before and after.

    python scripts/bench_sinkhorn.py [--n 500 --iters 100 --eps 0.05 --repeat 15 --device cpu --threads 1]

Threads default to 1 for both torch and numpy: on a shared 2-core machine a 2-thread OpenMP pool that
competes with other processes ran ~8x slower than one thread, which would measure the neighbours.
"""

import argparse
import os
import statistics
import time
import warnings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--iters", type=int, default=100)
    parser.add_argument("--eps", type=float, default=0.05)
    parser.add_argument("--repeat", type=int, default=15, help="timed calls per solver")
    parser.add_argument("--block", type=int, default=3, help="consecutive calls per solver and round")
    parser.add_argument("--budget", type=float, default=10.0, help="stop timing a solver after this many s")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for torch AND numpy's BLAS")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    # numpy's BLAS reads its thread count at import time: pin it to torch's so the comparison is fair.
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    import numpy as np
    import ot
    import torch

    from otgan_lab.ot.energy import cosine_cost
    from otgan_lab.ot.sinkhorn import sinkhorn

    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", message="Sinkhorn did not converge")
    device = torch.device(args.device)
    load_before = os.getloadavg()

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    gen = torch.Generator().manual_seed(args.seed)
    x, y = torch.randn(args.n, 2, generator=gen), torch.randn(args.n, 2, generator=gen) + 0.5
    cost64 = cosine_cost(x.double(), y.double())  # the one input, in [0, 2]
    a64 = np.full(args.n, 1.0 / args.n)
    eps, iters = args.eps, args.iters
    pot_kw = dict(numItermax=iters, stopThr=0.0)

    # name -> (timed call, call returning the plan as float64 numpy); ours return their plan in the result
    solvers: dict[str, tuple] = {}
    ours: list[str] = []
    for method in ("stabilized", "log"):
        for dtype in (torch.float64, torch.float32):
            cost = cost64.to(device=device, dtype=dtype)
            name = f"otgan_lab {method} ({str(dtype).removeprefix('torch.')}, {device.type})"
            ours.append(name)

            def call(cost=cost, method=method):
                return sinkhorn(cost, eps=eps, n_iters=iters, method=method)

            solvers[name] = (call, lambda call=call: call().plan.double().cpu().numpy())
    for np_dtype in (np.float64, np.float32):
        m_np, a_np = cost64.numpy().astype(np_dtype), a64.astype(np_dtype)
        for method in ("sinkhorn", "sinkhorn_log"):
            kw = dict(method=method, **pot_kw)
            solvers[f"POT {method} (numpy {np.dtype(np_dtype).name})"] = (
                lambda m_np=m_np, a_np=a_np, kw=kw: ot.sinkhorn2(a_np, a_np, m_np, eps, **kw),
                lambda m_np=m_np, a_np=a_np, kw=kw: ot.sinkhorn(a_np, a_np, m_np, eps, **kw).astype(float),
            )
    try:  # POT's torch backend, same device and float32
        cost_t = cost64.to(device=device, dtype=torch.float32)
        a_t = torch.full((args.n,), 1.0 / args.n, device=device)
        ot.sinkhorn2(a_t, a_t, cost_t, eps, **pot_kw)
        for method in ("sinkhorn", "sinkhorn_log"):
            kw = dict(method=method, **pot_kw)
            solvers[f"POT {method} (torch float32, {device.type})"] = (
                lambda kw=kw: ot.sinkhorn2(a_t, a_t, cost_t, eps, **kw),
                lambda kw=kw: ot.sinkhorn(a_t, a_t, cost_t, eps, **kw).double().cpu().numpy(),
            )
    except Exception as exc:  # noqa: BLE001 - an optional comparison; report and go on
        print(f"POT torch backend skipped: {exc!r}")

    # Accuracy: one untimed call each (it also warms each solver up and sizes its block).
    plans, block = {}, {}
    for name, (_, plan_fn) in solvers.items():
        start = time.perf_counter()
        plans[name] = plan_fn()
        block[name] = max(1, args.block) if time.perf_counter() - start < 0.5 else 1
    reference = plans["POT sinkhorn_log (numpy float64)"]  # correct at any eps, unlike the plain kernel
    accuracy = {}
    for name, plan in plans.items():
        value = float((plan * cost64.numpy()).sum())
        marginal_err = max(np.abs(plan.sum(1) - a64).max(), np.abs(plan.sum(0) - a64).max())
        accuracy[name] = (value, marginal_err, np.abs(plan - reference).max())
    del plans

    # Timing: rounds of blocks.
    wall: dict[str, list[float]] = {name: [] for name in solvers}
    cpu: dict[str, list[float]] = {name: [] for name in solvers}
    active = list(solvers)
    while active:
        for name in list(active):
            call = solvers[name][0]
            for k in range(block[name]):
                sync()
                start_wall, start_cpu = time.perf_counter(), time.process_time()
                call()
                sync()
                if k > 0 or block[name] == 1:
                    wall[name].append(time.perf_counter() - start_wall)
                    cpu[name].append(time.process_time() - start_cpu)
            if len(wall[name]) >= args.repeat or sum(wall[name]) >= args.budget:
                active.remove(name)
    med_wall = {name: statistics.median(v) for name, v in wall.items()}
    med_cpu = {name: statistics.median(v) for name, v in cpu.items()}

    print(
        f"n={args.n} iters={iters} eps={eps} device={device.type} threads={args.threads} "
        f"repeat<={args.repeat} block={args.block} load avg 1/5/15 min before: "
        + " ".join(f"{v:.2f}" for v in load_before)
        + ", after: "
        + " ".join(f"{v:.2f}" for v in os.getloadavg())
    )
    print(
        f"{'solver':42s} {'calls':>5s} {'wall ms':>9s} {'cpu ms':>9s} {'<P,C>':>12s} {'marg. err':>10s} "
        f"{'max|P-P_POT|':>12s}"
    )
    for name in solvers:
        value, marginal_err, diff = accuracy[name]
        print(
            f"{name:42s} {len(wall[name]):5d} {med_wall[name] * 1e3:9.2f} {med_cpu[name] * 1e3:9.2f} "
            f"{value:12.8f} {marginal_err:10.2e} {diff:12.2e}"
        )
    print("(max|P-P_POT|: largest plan difference to POT's numpy float64 'sinkhorn_log' plan)")
    print("speed ratio = POT median time / our median time (> 1: ours faster); CPU time [wall time]")
    short = {name: name.removeprefix("otgan_lab ").split(",")[0] + ")" for name in ours}
    print(f"  {'':40s} " + " ".join(f"{short[name]:>22s}" for name in ours))
    for name in solvers:
        if name.startswith("POT"):
            ratios = [(med_cpu[name] / med_cpu[o], med_wall[name] / med_wall[o]) for o in ours]
            cells = [f"{by_cpu:7.2f}x [{by_wall:6.2f}x]" for by_cpu, by_wall in ratios]
            print(f"  {name:40s} " + " ".join(f"{cell:>22s}" for cell in cells))


if __name__ == "__main__":
    main()
