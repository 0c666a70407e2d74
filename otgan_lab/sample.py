"""`otlab sample`: draw samples from a finished run's checkpoint with any sampler, without evaluating.

A Hydra app (conf/sample.yaml): `otlab sample run=<dir> n=64 sampler=drs out=<file>.png seed=0`. It uses the
run's saved config (not today's YAML) and its last checkpoint, so it works from the run directory alone
(AE-OT's OT map is in the checkpoint). Writes a picture (an image grid, or a scatter plot over the data for
2-D data) and the samples beside it as `<out>.pt` (a float tensor in data space: images in [-1, 1]).
"""

from __future__ import annotations

from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig

from otgan_lab import build, runconfig
from otgan_lab.errors import ConfigError
from otgan_lab.evaluation import random_real
from otgan_lab.paths import conf_dir
from otgan_lab.viz import image_grid, save_png, scatter_plot

APP_KEYS = ("run", "n", "out", "seed")  # the app's own keys; seed is the sampling seed, not the run's


def sample_run(run_dir: Path, cfg: DictConfig, n: int, seed: int, out: str | None) -> tuple[Path, Path]:
    _, data, method, state, _ = runconfig.load_run(run_dir, cfg)
    sampler = build.build_sampler(cfg.sampler)
    build.check_samplers(method, [sampler])
    torch.manual_seed(seed)
    method.eval()
    if sampler.needs_real_data:
        sampler.fit(method, lambda m: random_real(data, m))
    generator = torch.Generator(device=method.device).manual_seed(seed)
    with torch.no_grad():
        x = sampler.sample(method, n, generator=generator).float()
    step = int(state["step"])
    out_path = Path(out or run_dir / "samples" / f"sample_{sampler.name}_step_{step:08d}.png")
    if data.kind == "points":
        picture = scatter_plot(x, data.all(0, min(len(data), max(n, 1000))), data.meta.get("centres"),
                               title=f"{sampler.name}, step {step}")
    else:
        picture = image_grid(x)
    png = save_png(picture, out_path.with_suffix(".png"))
    tensor = out_path.with_suffix(".pt")
    torch.save(x.cpu(), tensor)
    stats = ", ".join(f"{k}={v:.4g}" for k, v in sampler.stats.items())
    print(f"{n} samples from {run_dir} (step {step}, sampler {sampler.name}{', ' + stats if stats else ''})"
          f"\n  picture: {png}\n  tensor:  {tensor}")
    return png, tensor


_ARGV: list[str] = []


@hydra.main(version_base="1.3", config_path=str(conf_dir()), config_name="sample")
def hydra_main(app_cfg: DictConfig) -> None:
    with runconfig.user_errors("sample"):
        n, seed = app_cfg.n, app_cfg.seed
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ConfigError(f"n must be a positive integer (how many samples), got {n!r}")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ConfigError(f"seed must be an integer (the sampling seed), got {seed!r}")
        run_dir = Path(app_cfg.run)
        cfg = runconfig.run_config(runconfig.saved_config(run_dir), app_cfg, _ARGV, APP_KEYS)
        sample_run(run_dir, cfg, n, seed, app_cfg.out)


def main() -> None:
    runconfig.launch(hydra_main, _ARGV, groups=("sampler",))
