"""Benchmark: otgan_lab's log-domain Sinkhorn against POT's ot.sinkhorn2 on one n x n problem.

Every solver gets the same cost (cosine distances of random 2-D points, values in [0, 2]), the same eps and
the same number of iterations (POT with stopThr=0 so it never stops early); the script prints each
result's value <P, C> and marginal error to show they agree, then median times and speed ratios. POT's
default method is the plain-kernel 'sinkhorn' (fast, but exp(-C/eps) underflows at OT-GAN's eps = 0.002);
'sinkhorn_log' is its log-domain equivalent of ours. Both are reported.

    python scripts/bench_sinkhorn.py [--n 500 --iters 100 --eps 0.05 --repeat 10 --device cpu --threads 1]

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
    parser.add_argument("--repeat", type=int, default=10, help="timed runs (fewer once a solver passes 10 s)")
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

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    def timed(fn) -> tuple[float, object]:
        """Median seconds over --repeat runs after a warm-up run (at least 3 once past 10 s), last result."""
        out = fn()
        sync()
        times: list[float] = []
        while len(times) < args.repeat and (len(times) < 3 or sum(times) < 10.0):
            start = time.perf_counter()
            out = fn()
            sync()
            times.append(time.perf_counter() - start)
        return statistics.median(times), out

    gen = torch.Generator().manual_seed(args.seed)
    x, y = torch.randn(args.n, 2, generator=gen), torch.randn(args.n, 2, generator=gen) + 0.5
    cost64 = cosine_cost(x.double(), y.double())  # the one input, in [0, 2]
    a64 = np.full(args.n, 1.0 / args.n)
    eps, iters = args.eps, args.iters

    def marginal_error(plan: np.ndarray) -> float:
        return max(np.abs(plan.sum(1) - a64).max(), np.abs(plan.sum(0) - a64).max())

    rows = []  # (name, seconds, value, marginal error)
    ours = {}  # dtype name -> seconds
    for dtype in (torch.float32, torch.float64):
        cost = cost64.to(device=device, dtype=dtype)
        seconds, res = timed(lambda cost=cost: sinkhorn(cost, eps=eps, n_iters=iters))
        ours[str(dtype).removeprefix("torch.")] = seconds
        name = f"otgan_lab sinkhorn ({str(dtype).removeprefix('torch.')}, {device.type})"
        rows.append((name, seconds, res.cost.item(), res.err.item()))

    for np_dtype in (np.float64, np.float32):
        m_np, a_np = cost64.numpy().astype(np_dtype), a64.astype(np_dtype)
        for method in ("sinkhorn", "sinkhorn_log"):
            kw = dict(method=method, numItermax=iters, stopThr=0.0)
            seconds, value = timed(
                lambda m_np=m_np, a_np=a_np, kw=kw: ot.sinkhorn2(a_np, a_np, m_np, eps, **kw)
            )
            plan = ot.sinkhorn(a_np, a_np, m_np, eps, **kw).astype(np.float64)
            rows.append(
                (
                    f"POT {method} (numpy {np.dtype(np_dtype).name})",
                    seconds,
                    float(value),
                    marginal_error(plan),
                )
            )

    try:  # POT's torch backend, same device and float32
        cost_t = cost64.to(device=device, dtype=torch.float32)
        a_t = torch.full((args.n,), 1.0 / args.n, device=device)
        for method in ("sinkhorn", "sinkhorn_log"):
            kw = dict(method=method, numItermax=iters, stopThr=0.0)
            seconds, value = timed(lambda kw=kw: ot.sinkhorn2(a_t, a_t, cost_t, eps, **kw))
            plan = ot.sinkhorn(a_t, a_t, cost_t, eps, **kw).double().cpu().numpy()
            rows.append(
                (f"POT {method} (torch float32, {device.type})", seconds, float(value), marginal_error(plan))
            )
    except Exception as exc:  # noqa: BLE001 - an optional comparison; report and go on
        print(f"POT torch backend skipped: {exc!r}")

    print(
        f"n={args.n} iters={iters} eps={eps} device={device.type} threads={args.threads} repeat={args.repeat}"
    )
    print(f"{'solver':45s} {'median ms':>10s} {'<P,C>':>12s} {'marg. err':>10s}")
    for name, seconds, value, err in rows:
        print(f"{name:45s} {seconds * 1e3:10.2f} {value:12.8f} {err:10.2e}")
    print("speed ratio = POT time / our time (> 1: ours faster)")
    for name, seconds, *_ in rows:
        if name.startswith("POT"):
            ratios = "  ".join(f"vs ours {key}: {seconds / t:6.2f}x" for key, t in ours.items())
            print(f"  {name:43s} {ratios}")


if __name__ == "__main__":
    main()
