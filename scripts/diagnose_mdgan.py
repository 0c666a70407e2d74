"""Where an MD-GAN run on a 2-D mixture puts real modes and generated samples in its critic's embedding.

MD-GAN scores the critic embedding e(x) by a Gaussian mixture on a simplex (otgan_lab/methods/mdgan.py). For
each real mode this prints the simplex vertex its samples sit nearest to, and for the generated samples the
same histogram plus the modes they reach (3-sigma rule). If several real modes share one vertex and the
generator covers only the modes of some vertices, the likelihood loss is satisfied without covering the
others: it has no term that spreads generated mass over the components.

    python scripts/diagnose_mdgan.py outputs/runs/<mdgan on grid25 run dir> [--n 20000]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from omegaconf import OmegaConf

from otgan_lab import runconfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--n", type=int, default=20000)
    args = parser.parse_args()
    cfg = OmegaConf.create(runconfig.saved_config(args.run))
    result, data, method, _, ckpt = runconfig.load_run(args.run, cfg)
    if result["method"] != "mdgan" or data.kind != "points" or "centres" not in data.meta:
        raise SystemExit(f"{args.run}: needs an mdgan run on a 2-D mixture (ring8, grid25), got "
                         f"{result['method']} on {result['dataset']}")
    critic, centres, std = method.nets["critic"], data.meta["centres"], float(cfg.dataset.std)
    torch.manual_seed(0)
    method.eval()
    with torch.no_grad():
        real = data.all(0, min(args.n, len(data)))
        fake = method.sample(args.n)
        means = critic.means.double()
        vertex_real = torch.cdist(critic.embed(real).double(), means).argmin(1)
        vertex_fake = torch.cdist(critic.embed(fake).double(), means).argmin(1)
        mode_real = torch.cdist(real, centres).argmin(1)
        dist_fake, mode_fake = torch.cdist(fake, centres).min(1)
        ll_real, ll_fake = critic.log_likelihood(real), critic.log_likelihood(fake)
    k, n_modes = len(means), len(centres)
    table = torch.zeros(n_modes, k, dtype=torch.long)
    table.index_put_((mode_real, vertex_real), torch.ones_like(mode_real), accumulate=True)
    hq = dist_fake < 3 * std
    print(f"{args.run} ({ckpt.name}); log lambda {float(critic.log_lambda):.3f}, "
          f"mean log L: real {float(ll_real.mean()):.3f}, generated {float(ll_fake.mean()):.3f}")
    print(f"real samples per nearest vertex:      {torch.bincount(vertex_real, minlength=k).tolist()}")
    print(f"generated samples per nearest vertex: {torch.bincount(vertex_fake, minlength=k).tolist()}")
    print(f"nearest vertex of each real mode:     {table.argmax(1).tolist()}")
    print("high-quality generated samples per mode: "
          f"{torch.bincount(mode_fake[hq], minlength=n_modes).tolist()}")
    used = sorted(set(table.argmax(1).tolist()))
    for v in used:
        modes = [m for m in range(n_modes) if int(table[m].argmax()) == v]
        reached = sum(int(torch.bincount(mode_fake[hq], minlength=n_modes)[m] > 0) for m in modes)
        print(f"  vertex {v}: real modes {modes} -> {reached}/{len(modes)} reached by the generator")


if __name__ == "__main__":
    main()
