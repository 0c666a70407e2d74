"""`otlab export`: take a trained generator elsewhere.

A Hydra app (conf/export.yaml): `otlab export run=<dir> [out=<dir>] [use_ema=null|true|false]`. From the
run's newest checkpoint (EMA weights when it holds them, unless use_ema=false) it writes:

- `generator.ts`: TorchScript, loaded with `torch.jit.load` alone (no otgan_lab, no config). `gen(z)` maps
  prior draws (n, z_dim) to samples in data space (images in [-1, 1]); `gen.sample(n)` draws z from the
  run's prior inside (`gen.prior_kind`: normal or uniform on [-1, 1], `gen.z_dim`, `gen.data_shape`).
- `generator.pt`: `{"state_dict", "generator" (the net's config, `_target_` included), "prior", "method",
  "dataset", "step", "ema", "config" (the run's resolved config), "version"}`, readable with
  `torch.load(weights_only=True)`; `hydra.utils.instantiate(saved["generator"])` rebuilds the net (with
  otgan_lab, or the module of a custom `_target_`, importable).

The exported network is the method's generating net (the decoder for the autoencoder methods), the one its
`generate(z)` runs. AE-OT and AE-OT-GAN draw their codes from a semi-discrete OT map, not from a simple
prior: their `gen(codes)` works, `gen.sample(n)` raises (sample with `otlab sample`).
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path
from typing import Any

import hydra
import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from otgan_lab import __version__, build, checkpoint, runconfig
from otgan_lab.errors import ConfigError
from otgan_lab.paths import conf_dir

OT_MAP_PRIOR = "ot_map"  # prior_kind of methods whose codes come from a latent OT map (no sample())


class ExportedGenerator(nn.Module):
    """z -> x with the prior recorded: what generator.ts holds (scripted around the traced net)."""

    def __init__(self, generator: nn.Module, z_dim: int, prior_kind: str, data_shape: list[int]) -> None:
        super().__init__()
        self.generator = generator
        self.z_dim = int(z_dim)
        self.prior_kind = str(prior_kind)
        self.data_shape = [int(s) for s in data_shape]
        self.register_buffer("anchor", torch.zeros(0), persistent=False)  # follows .to(device)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.generator(z)

    @torch.jit.export
    def prior(self, n: int) -> torch.Tensor:
        if self.prior_kind == "normal":
            return torch.randn(n, self.z_dim, device=self.anchor.device)
        if self.prior_kind == "uniform":
            return torch.rand(n, self.z_dim, device=self.anchor.device) * 2.0 - 1.0
        raise RuntimeError("this generator's codes come from the run's latent OT map, not a simple prior: "
                           "call it on codes, or draw samples with `otlab sample run=<run dir>`")

    @torch.jit.export
    def sample(self, n: int) -> torch.Tensor:
        return self.forward(self.prior(n))


def _load_generator(run_dir: Path, use_ema: bool | None, device: torch.device):
    """(method with the newest checkpoint's weights, EMA weights applied or not, step, resolved config)."""
    cfg = OmegaConf.create(runconfig.saved_config(run_dir))
    found = checkpoint.list_checkpoints(run_dir / "checkpoints")
    if not found:
        raise ConfigError(f"{run_dir / 'checkpoints'} holds no checkpoint to export")
    method = build.build_method(cfg, device)
    state = checkpoint.load(found[-1], map_location=device)
    method.load_state_dict(state["method"])
    has_ema = state.get("ema") is not None
    if use_ema and not has_ema:
        raise ConfigError(f"use_ema=true but {found[-1].name} holds no EMA weights (trained without EMA)")
    ema = has_ema if use_ema is None else bool(use_ema)
    if ema:
        method.ema_module.load_state_dict(state["ema"])
    method.eval()
    return method, ema, int(state["step"]), cfg


def _prior(method) -> tuple[str, int]:
    """(kind, width) of what the generating net takes: the prior's draws, or OT-map codes."""
    if method.has_latent_ot:
        return OT_MAP_PRIOR, int(method.z_dim)
    with torch.no_grad():
        width = int(method.prior(2).shape[1])  # UOTM: the data-shaped source and the latent, both N(0, I)
    return method.prior_kind, width


def _compile(net: nn.Module, z: torch.Tensor, check: torch.Tensor,
             reference: torch.Tensor) -> torch.jit.ScriptModule:
    """The net traced on `z`, checked on another batch size; scripted when the trace does not generalise."""
    attempts: list[str] = []
    for how in ("trace", "script"):
        try:
            with warnings.catch_warnings():  # torch marks TorchScript deprecated; it still loads
                warnings.simplefilter("ignore", torch.jit.TracerWarning)
                warnings.simplefilter("ignore", FutureWarning)
                compiled = torch.jit.trace(net, z) if how == "trace" else torch.jit.script(net)
            with torch.no_grad():
                out = compiled(check)
            if out.shape == reference.shape and torch.allclose(out, reference, rtol=1e-5, atol=1e-6):
                return compiled
            attempts.append(f"{how}: outputs differ from the generator's")
        except Exception as exc:  # a net TorchScript cannot take: say so and try the other way
            attempts.append(f"{how}: {exc.__class__.__name__}: {str(exc).splitlines()[0]}")
    raise ConfigError("the generator cannot be exported as TorchScript (" + "; ".join(attempts) + ")")


def _net_config(cfg: DictConfig, net_name: str, width: int) -> dict[str, Any]:
    """The generating net's config, ready for instantiate(): a partial the method completed with its prior's
    width (UOTM: `z_dim: null` in the model) gets that width."""
    node = OmegaConf.to_container(cfg.model.nets[net_name], resolve=True)
    if node.pop("_partial_", False) and "z_dim" in node and node["z_dim"] is None:
        node["z_dim"] = width
    return node


def export_run(run_dir: Path, out: Path | None = None, use_ema: bool | None = None,
               device: str = "cpu") -> dict[str, Any]:
    """Write generator.ts and generator.pt for the run in `run_dir`; returns what was written."""
    run_dir = Path(run_dir)
    out = Path(out) if out is not None else run_dir / "export"
    method, ema, step, cfg = _load_generator(run_dir, use_ema, build.resolve_device(device))
    net = method.generator_module
    kind, width = _prior(method)
    data_shape = [int(s) for s in cfg.dataset.shape]
    generator = torch.Generator(device=method.device).manual_seed(0)
    z_trace = torch.randn(2, width, generator=generator, device=method.device)
    z_check = torch.randn(3, width, generator=generator, device=method.device)
    with torch.no_grad():
        reference = method.generate(z_check)
    compiled = _compile(net, z_trace, z_check, reference)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        exported = torch.jit.script(ExportedGenerator(compiled, width, kind, data_shape))
    out.mkdir(parents=True, exist_ok=True)
    ts_path, pt_path = out / "generator.ts", out / "generator.pt"
    exported.save(str(ts_path))
    net_cfg = _net_config(cfg, method.capabilities.generator_net, width)
    saved = {
        "state_dict": {k: v.detach().cpu() for k, v in net.state_dict().items()},
        "generator": net_cfg, "prior": {"kind": kind, "dim": width}, "data_shape": data_shape,
        "method": str(cfg.method.name), "dataset": str(cfg.dataset.name), "step": step, "ema": ema,
        "config": OmegaConf.to_container(cfg, resolve=True), "version": __version__,
    }
    torch.save(saved, pt_path)
    return {"torchscript": ts_path, "state_dict": pt_path, "ema": ema, "step": step, "prior": kind,
            "z_dim": width, "method": saved["method"], "dataset": saved["dataset"]}


def usage(info: dict[str, Any]) -> str:
    """The lines that load and sample the export (printed by `otlab export`, shown in the README)."""
    ts, pt = info["torchscript"], info["state_dict"]
    if info["prior"] == OT_MAP_PRIOR:
        draw = [("x = gen(codes)", f"codes: (n, {info['z_dim']}) from the run's OT map; gen.sample raises")]
    else:
        draw = [("x = gen.sample(16)", "(16, *gen.data_shape); images in [-1, 1]"),
                ("z = gen.prior(16); x = gen(z)", f"the same, z ~ {info['prior']} (dim {info['z_dim']})")]
    code = [("import torch", ""), (f"gen = torch.jit.load({str(ts)!r})", "no otgan_lab needed"),
            ("torch.manual_seed(0)", ""), *draw]
    width = max(len(c) for c, _ in code) + 2
    lines = [f"{c:<{width}}# {note}" if note else c for c, note in code]
    return "\n".join([
        *lines, "",
        "# or the state dict, with otgan_lab (or your _target_'s module) importable:",
        "from hydra.utils import instantiate",
        f"saved = torch.load({str(pt)!r}, weights_only=True)",
        "net = instantiate(saved['generator']); net.load_state_dict(saved['state_dict']); net.eval()",
    ])


@hydra.main(version_base="1.3", config_path=str(conf_dir()), config_name="export")
def hydra_main(app_cfg: DictConfig) -> None:
    with runconfig.user_errors("export"):
        use_ema = app_cfg.use_ema
        if use_ema is not None and not isinstance(use_ema, bool):
            raise ConfigError(f"use_ema must be true, false or null, got {use_ema!r}")
        run_dir = Path(app_cfg.run)
        info = export_run(run_dir, Path(app_cfg.out) if app_cfg.out else None, use_ema, str(app_cfg.device))
    weights = "EMA weights" if info["ema"] else "raw weights (no EMA in the checkpoint)" if use_ema is None \
        else "raw weights"
    print(f"exported the generator of {run_dir} ({info['method']} on {info['dataset']}, step {info['step']}, "
          f"{weights})\n  TorchScript: {info['torchscript']}\n  state dict:  {info['state_dict']}\n")
    print(usage(info))


def main() -> None:
    from otgan_lab.cli import add_user_import_paths

    add_user_import_paths(sys.argv[1:])  # a run trained with `_target_: my_nets.Gen` from the user's folder
    hydra_main()
