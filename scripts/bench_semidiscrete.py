"""Benchmark the AE-OT semi-discrete OT kernel and solver (otgan_lab/ot/semidiscrete.py).

Default problem: 60,000 random codes of dimension 64 (MNIST-sized AE-OT), normalised to [-1, 1] as AE-OT
codes are. Prints the power-cell argmax throughput (points * cells / s), the solver's iterations per second
and either the time to reach the tolerance or the ||g|| reached within --time-limit, and the time to
generate codes with the extended map.

    python scripts/bench_semidiscrete.py --device cpu --time-limit 120
    python scripts/bench_semidiscrete.py --device cuda --time-limit 600 --max-iter 20000
"""

from __future__ import annotations

import argparse
import math
import sys
import time

import torch

from otgan_lab.ot.semidiscrete import (
    DEFAULT_CHUNK_SIZE,
    SemiDiscreteOT,
    generate_codes,
    normalize_codes,
    power_cell_argmax,
)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=60_000, help="number of target codes (cells)")
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--max-iter", type=int, default=20_000)
    parser.add_argument("--time-limit", type=float, default=120.0, help="seconds for the solve")
    parser.add_argument("--lr", type=float, default=5e-2)
    parser.add_argument("--tol", type=float, default=2e-3)
    parser.add_argument("--n-samples", type=int, default=20_000, help="initial QMC samples (pyOMT CelebA)")
    parser.add_argument("--max-samples", type=int, default=2**20)
    parser.add_argument("--chunk-size", type=int, default=DEFAULT_CHUNK_SIZE)
    parser.add_argument("--argmax-points", type=int, default=8192, help="points in the throughput test")
    parser.add_argument("--n-gen", type=int, default=10_000, help="codes to generate (0 skips)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=sys.stdout.isatty())
    return parser.parse_args()


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    args = parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    gen = torch.Generator().manual_seed(args.seed)
    codes, _ = normalize_codes(torch.randn(args.n, args.dim, generator=gen))
    codes = codes.to(device)
    print(f"device {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}), "
          f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    print(f"target: {args.n} codes x {args.dim} dims, normalised to [-1, 1]; chunk_size {args.chunk_size}")

    # ---- kernel throughput: one argmax over all cells for a batch of cube points ----
    x = torch.rand(args.argmax_points, args.dim, generator=gen).sub_(0.5).to(device)
    h = torch.zeros(args.n, device=device)
    power_cell_argmax(x, codes, h, chunk_size=args.chunk_size)  # warm-up (allocator, cuBLAS handles)
    synchronize(device)
    repeats, start = 0, time.perf_counter()
    while repeats < 3 or time.perf_counter() - start < 2.0:
        power_cell_argmax(x, codes, h, chunk_size=args.chunk_size)
        synchronize(device)
        repeats += 1
    per_call = (time.perf_counter() - start) / repeats
    pairs = args.argmax_points * args.n
    print(f"power_cell_argmax: {args.argmax_points} points x {args.n} cells in {per_call * 1e3:.1f} ms "
          f"-> {pairs / per_call:.3e} points*cells/s ({2 * pairs * args.dim / per_call / 1e9:.1f} GFLOP/s)")

    # ---- solver ----
    solver = SemiDiscreteOT(lr=args.lr, tol=args.tol, max_iter=args.max_iter, n_samples=args.n_samples,
                            max_samples=args.max_samples, chunk_size=args.chunk_size, seed=args.seed,
                            device=device, time_limit_s=args.time_limit)
    result = solver.solve(codes, progress=args.progress)
    synchronize(device)
    rate = result.n_iter / result.elapsed_s
    norms = result.history["grad_norm"]
    print(f"solver: {result.n_iter} iterations in {result.elapsed_s:.1f} s -> {rate:.3f} it/s "
          f"(lr {args.lr}, N {args.n_samples} -> {result.n_samples})")
    if result.converged:
        print(f"reached ||g|| < {args.tol} in {result.elapsed_s:.1f} s; ||g|| = {result.grad_norm:.3e}")
    else:
        stop = "time limit" if result.n_iter < args.max_iter else "max_iter"
        print(f"not converged ({stop}): ||g|| {norms[0]:.3e} -> {result.grad_norm:.3e} "
              f"(tol {args.tol}), best {min(norms):.3e}")
    print(f"coverage (cells with mass): {result.coverage:.4f}; "
          f"max |mu(W_i) - 1/n| * n = {(result.mass - 1 / args.n).abs().max().item() * args.n:.2f}")

    # ---- generation with the extended map ----
    if args.n_gen > 0:
        start = time.perf_counter()
        new_codes = generate_codes(codes, result.h, args.n_gen, angle_threshold=math.pi, k=20,
                                   seed=args.seed + 1, chunk_size=args.chunk_size)
        synchronize(device)
        print(f"generate_codes: {new_codes.shape[0]} codes (top-20, no angle rejection) in "
              f"{time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
