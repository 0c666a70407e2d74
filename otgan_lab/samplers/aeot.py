"""AE-OT generation with explicit options (An et al., ICLR 2020; METHODS.md §9 "Extended map").

New codes come from the extended semi-discrete OT map: for QMC source points, pairs of the point's cell
and one of its top-k supporting planes are kept when the planes meet at an angle <= `angle_threshold`, and
interpolated as (1 - interp) y_I0 + interp y_Ik; the decoder maps them to data space. `angle_threshold=pi`
keeps every pair (no rejection of singular regions): the mode-mixture ablation. Options left at None use
the method's own `generation` settings. Works with any method exposing `extended_codes` (aeot, aeot_gan).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from otgan_lab.samplers.base import ChunkedSampler


class AEOTSampler(ChunkedSampler):
    name = "aeot"

    def __init__(self, angle_threshold: float | None = None, k: int | None = None,
                 interp: float | str | None = None, batch_size: int = 1000) -> None:
        super().__init__(batch_size)
        if angle_threshold is not None and angle_threshold <= 0:
            raise ValueError(f"angle_threshold must be > 0 radians, got {angle_threshold}")
        if k is not None and k < 2:
            raise ValueError(f"k must be >= 2 (pairs of planes), got {k}")
        self.angle_threshold, self.k, self.interp = angle_threshold, k, interp

    def requirement_problems(self, method: Any) -> list[str]:
        if getattr(method, "has_latent_ot", False):
            return []
        return [f"sampler={self.name} needs a method with a latent OT map (has_latent_ot), and method "
                f"{getattr(method, 'name', '?')!r} has none; use it with method=aeot or aeot_gan"]

    def _sample(self, method: Any, n: int, generator: torch.Generator | None) -> Tensor:
        problems = self.requirement_problems(method)
        if problems:
            raise TypeError(problems[0])
        codes = method.extended_codes(n, angle_threshold=self.angle_threshold, k=self.k, interp=self.interp,
                                      generator=generator)
        with torch.no_grad():
            parts = [method.generate(codes[i:i + self.batch_size]) for i in range(0, n, self.batch_size)]
        self.stats = {"draws_per_sample": 1.0}
        return torch.cat(parts) if parts else method.generate(codes)

    def __repr__(self) -> str:
        return (f"AEOTSampler(angle_threshold={self.angle_threshold}, k={self.k}, interp={self.interp}, "
                f"batch_size={self.batch_size})")
