"""AE-OT (An, Guo, Lei, Luo, Yau, Gu, "AE-OT: a new generative model based on extended semi-discrete
optimal transport", ICLR 2020), METHODS.md §9.

Train an autoencoder (MSE + a small L1 on the codes, as pyOMT's demo). After training, `fit_end` encodes the
training set, normalises the codes to [-1, 1] and solves semi-discrete OT from the uniform cube to them
(otgan_lab/ot/semidiscrete.py). Generation decodes codes of the extended OT map: neighbouring codes are
interpolated only when their supporting planes meet at a small angle, so samples do not mix modes. The map
(normalised codes, heights, normalisation) lives in buffers, so checkpoints hold it.

Deviations from pyOMT: Adam lr 1e-3, not 2e-5 (budgets of thousands of steps, not 500 epochs); `ot.n_codes`
can cap the OT targets at a seeded random subset and `ot.solver.time_limit_s` can stop the solve (a CPU
cannot afford O(N n d) per iteration for all 60k MNIST codes); exact duplicate codes are dropped (their cells
could never split the mass).
"""

from __future__ import annotations

import sys
import warnings

import torch
import torch.nn.functional as F
from torch.quasirandom import SobolEngine

from otgan_lab.methods.base import AutoEncoderMethod, Capabilities
from otgan_lab.metrics.spec import MetricSpec, frozen_specs
from otgan_lab.ot.semidiscrete import (
    CodeStats,
    SemiDiscreteOT,
    denormalize_codes,
    generate_codes,
    normalize_codes,
    power_cell_argmax,
    sobol_cube,
)

_OT_BUFFERS = ("ot_codes", "ot_heights")  # their first dimension is the number of codes, known after fit_end


class AEOT(AutoEncoderMethod):
    declared_capabilities = Capabilities(critic=False, reconstructs=True, latent_ot=True,
                                         generator_net="decoder")
    extra_learning_rates = ("ot.solver.lr",)

    def __init__(self, *, code_l1: float = 1e-5, ot: dict | None = None, generation: dict | None = None,
                 **kw):
        super().__init__(**kw)
        ot = dict(ot or {})
        self.code_l1 = float(code_l1)
        self.n_codes = ot.pop("n_codes", None)
        self.normalize = str(ot.pop("normalize", "isotropic"))
        self.encode_batch = int(ot.pop("encode_batch", 1000))
        self.subset_seed = int(ot.pop("subset_seed", 0))
        self.solver = SemiDiscreteOT(**ot.pop("solver", {}))
        if ot:
            raise ValueError(f"unknown method.ot keys {sorted(ot)}")
        self.generation = {"angle_threshold": 0.7, "k": 20, "interp": 0.75, **(generation or {})}
        self.register_buffer("ot_codes", torch.zeros(0, self.z_dim))  # (n, d) normalised OT targets
        self.register_buffer("ot_heights", torch.zeros(0))  # (n,) Brenier heights h
        self.register_buffer("code_shift", torch.zeros(self.z_dim))  # code = normalised * scale + shift
        self.register_buffer("code_scale", torch.ones(self.z_dim))

    # -- training -------------------------------------------------------------------------------------
    def autoencoder_loss(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
        """(loss, logs, reconstruction): MSE over elements + code_l1 * E||z||_1."""
        z = self.encode(x)
        reconstruction = self.nets["decoder"](z)
        mse = F.mse_loss(reconstruction.float(), x.float())
        l1 = z.float().abs().sum(1).mean()
        logs = {"reconstruction": mse.detach(), "code_l1": l1.detach()}
        return mse + self.code_l1 * l1, logs, reconstruction

    def train_step(self, real, ctx):
        loss, logs, _ = self.autoencoder_loss(real(self.batch_size))
        ctx.optimize("autoencoder", loss)
        return logs

    # the keys of fit_ot's result
    fit_end_specs = frozen_specs({
        "ot_n_codes": MetricSpec("OT target codes", None),
        "ot_grad_norm": MetricSpec("OT gradient norm", "min"),  # ||g|| = deviation from equal cell masses
        "ot_coverage": MetricSpec("OT cell coverage", "max"),
        "ot_iterations": MetricSpec("OT iterations", None),
        "ot_converged": MetricSpec("OT converged", "max"),
        "ot_seconds": MetricSpec("OT solve seconds", None),
    })

    def fit_end(self, data, ctx) -> dict[str, float]:
        return self.fit_ot(self.encode_dataset(data))

    # -- the OT map -----------------------------------------------------------------------------------
    @property
    def is_fitted(self) -> bool:
        return self.ot_codes.shape[0] > 0

    def encode_dataset(self, data) -> torch.Tensor:
        """Codes (n, d) fp32 of the training set, or of a seeded random subset of `ot.n_codes` samples."""
        n = len(data) if self.n_codes is None else min(int(self.n_codes), len(data))
        if n == len(data):
            return self.encode_chunks(data.all(i, min(n, i + self.encode_batch))
                                      for i in range(0, n, self.encode_batch))
        subset = torch.randperm(len(data), generator=torch.Generator().manual_seed(self.subset_seed))[:n]
        subset = subset.sort().values.to(data.device)
        return self.encode_chunks(data.to_data_space(data.data[subset[i:i + self.encode_batch]])
                                  for i in range(0, n, self.encode_batch))

    @torch.no_grad()
    def encode_chunks(self, chunks) -> torch.Tensor:
        """Codes (n, d) fp32 of an iterable of data batches, encoder in eval mode, no autocast."""
        encoder, was_training = self.nets["encoder"], self.nets["encoder"].training
        encoder.eval()
        try:
            with torch.autocast(self.device.type, enabled=False):
                return torch.cat([encoder(x.to(self.device).float()).float() for x in chunks])
        finally:
            encoder.train(was_training)

    @torch.no_grad()
    def fit_ot(self, codes: torch.Tensor, progress: bool | None = None) -> dict[str, float]:
        """Normalise `codes` (n, d), solve semi-discrete OT to them and store the map in the buffers."""
        interactive = sys.stdout.isatty() if progress is None else progress
        every = max(1, self.solver.max_iter // 20)

        def report(it: int, grad_norm: float, coverage: float) -> None:
            if not interactive and (it == 1 or it % every == 0):
                print(f"[semi-discrete OT] iter {it}/{self.solver.max_iter}  ||g||={grad_norm:.3e}  "
                      f"coverage={coverage:.3f}", flush=True)

        with torch.autocast(self.device.type, enabled=False):  # OT solves run in fp32
            codes = torch.unique(codes.float(), dim=0)
            normalized, stats = normalize_codes(codes, self.normalize)
            result = self.solver.solve(normalized, on_iter=report, progress=interactive)
        self.ot_codes, self.ot_heights = normalized, result.h.to(normalized)
        self.code_shift, self.code_scale = stats.shift, stats.scale
        return {"ot_n_codes": float(len(codes)), "ot_grad_norm": result.grad_norm,
                "ot_coverage": result.coverage, "ot_iterations": float(result.n_iter),
                "ot_converged": float(result.converged),
                "ot_seconds": result.elapsed_s}

    @torch.no_grad()
    def extended_codes(self, n: int, *, angle_threshold: float | None = None, k: int | None = None,
                       interp: float | str | None = None, n_source: int | None = None,
                       generator: torch.Generator | None = None) -> torch.Tensor:
        """n codes (encoder space) from the extended OT map; None options take the method's `generation`.

        Before fit_end there is no map: N(0, I) codes, with a warning. When too few pairs pass the angle
        threshold, the plain OT map's codes y_I0 (no interpolation), with a warning.
        """
        if not self.is_fitted:
            warnings.warn(f"{self.name}: no OT map yet (fit_end has not run); decoding N(0, I) codes",
                          stacklevel=2)
            return torch.randn(n, self.z_dim, generator=generator,
                               device=generator.device if generator else self.device).to(self.device)
        given = {"angle_threshold": angle_threshold, "k": k, "interp": interp}
        opts = {**self.generation, **{key: v for key, v in given.items() if v is not None}}
        # a fresh Sobol scramble per call, drawn from torch's RNG (the solver's own QMC set uses seed 0)
        seed = int(torch.randint(1, 2**31 - 1, (), generator=generator,
                                 device=generator.device if generator else "cpu"))
        with torch.autocast(self.device.type, enabled=False):
            try:
                codes = generate_codes(self.ot_codes, self.ot_heights, n,
                                       k=min(int(opts["k"]), len(self.ot_codes)),
                                       angle_threshold=float(opts["angle_threshold"]), interp=opts["interp"],
                                       seed=seed, n_source=n_source)
            except RuntimeError as exc:  # too few pairs pass the threshold (few, far-apart codes)
                if "angle_threshold" not in str(exc):
                    raise
                warnings.warn(f"{exc}; using the OT map's own codes instead (no interpolation)", stacklevel=2)
                source = sobol_cube(SobolEngine(self.z_dim, scramble=True, seed=seed), n, self.device)
                codes = self.ot_codes[power_cell_argmax(source, self.ot_codes, self.ot_heights)]
            return denormalize_codes(codes, CodeStats(self.code_shift, self.code_scale))

    def prior(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.extended_codes(n, generator=generator)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # the OT buffers' length is the number of codes: take it from the checkpoint before copying
        for name in _OT_BUFFERS:
            incoming = state_dict.get(prefix + name)
            if incoming is not None and incoming.shape != getattr(self, name).shape:
                setattr(self, name, torch.empty(incoming.shape, dtype=incoming.dtype, device=self.device))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
