"""`otlab sample`: draw samples from a finished run's checkpoint with any sampler, without evaluating.

    otlab sample run=outputs/runs/<dir> [n=64] [sampler=drs] [out=<file>.png] [seed=0] [eval.use_ema=true]
                 [sampler.percentile=95] [device=cpu]

Uses the run's saved config (not today's YAML) and its last checkpoint, so it works from the run directory
alone (AE-OT's OT map is in the checkpoint). Writes a picture (an image grid, or a scatter plot over the
data for 2-D data) and the samples themselves beside it as `<out>.pt` (a float tensor in data space: images
in [-1, 1], shape (n, C, H, W)). Default out: <run>/samples/sample_<sampler>_step_<step>.png.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from rich.console import Console
from rich.markup import escape

from otgan_lab import build, records
from otgan_lab.errors import OtlabError
from otgan_lab.eval import load_run, split_key_values
from otgan_lab.evaluation import random_real
from otgan_lab.viz import image_grid, save_png, scatter_plot

USAGE = __doc__.split("\n\n")[1]
_SPECIAL = ("run", "n", "out", "seed", "sampler", "device")


def parse_args(argv: list[str]) -> tuple[dict[str, str], list[str]]:
    special, dotted = split_key_values(argv, _SPECIAL, USAGE)
    if "run" not in special:
        raise build.ConfigError(f"give run=<run dir>\n{USAGE}")
    if not special.get("n", "64").isdigit() or int(special.get("n", "64")) < 1:
        raise build.ConfigError(f"n must be a positive integer, got {special['n']!r}")
    if not special.get("seed", "0").lstrip("-").isdigit():
        raise build.ConfigError(f"seed must be an integer, got {special['seed']!r}")
    return special, dotted


def sample_run(run_dir: Path, special: dict[str, str], dotted: list[str]) -> tuple[Path, Path]:
    if not (run_dir / records.RESULT_FILE).is_file():
        raise build.ConfigError(f"{run_dir} is not a run directory (no result.json)")
    n, seed = int(special.get("n", 64)), int(special.get("seed", 0))
    choices = {k: v for k, v in special.items() if k in ("sampler", "device")}
    _, cfg, data, method, state, _ = load_run(run_dir, choices, dotted)
    sampler = build.build_sampler(cfg.sampler)
    torch.manual_seed(seed)
    method.eval()
    if sampler.needs_real_data:
        sampler.fit(method, lambda m: random_real(data, m))
    generator = torch.Generator(device=method.device).manual_seed(seed)
    with torch.no_grad():
        x = sampler.sample(method, n, generator=generator).float()
    step = int(state["step"])
    out = Path(special.get("out") or run_dir / "samples" / f"sample_{sampler.name}_step_{step:08d}.png")
    if data.kind == "points":
        picture = scatter_plot(x, data.all(0, min(len(data), max(n, 1000))), data.meta.get("centres"),
                               title=f"{sampler.name}, step {step}")
    else:
        picture = image_grid(x)
    png = save_png(picture, out.with_suffix(".png"))
    tensor = out.with_suffix(".pt")
    torch.save(x.cpu(), tensor)
    stats = ", ".join(f"{k}={v:.4g}" for k, v in sampler.stats.items())
    print(f"{n} samples from {run_dir} (step {step}, sampler {sampler.name}{', ' + stats if stats else ''})"
          f"\n  picture: {png}\n  tensor:  {tensor}")
    return png, tensor


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    try:
        special, dotted = parse_args(argv)
        sample_run(Path(special["run"]), special, dotted)
    except OtlabError as exc:
        Console(stderr=True, soft_wrap=True).print(f"[bold red]otlab sample:[/] {escape(str(exc))}")
        sys.exit(2)
