"""Autoencoder reconstructions of real data: the floor a generator that decodes codes can reach.

Not a generative sampler: it encodes ``n`` real samples and decodes them (``method.reconstruct``), so that
an FID of the reconstructions sits beside the generated samples' FID on the same run and protocol. R5's
AE-OT table prints this row as "AE (reconstruction)". Works with any method exposing ``reconstruct``
(aeot, aeot_gan, wae_mmd, wae_gan); the real samples come from ``fit`` (the evaluator passes the dataset).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from otgan_lab.samplers.base import ChunkedSampler, RealData, real_batches


class ReconstructionSampler(ChunkedSampler):
    name = "reconstruction"

    def __init__(self, batch_size: int = 1000) -> None:
        super().__init__(batch_size)
        self._real: RealData | None = None

    @property
    def needs_real_data(self) -> bool:
        return True

    def requirement_problems(self, method: Any) -> list[str]:
        if getattr(method, "can_reconstruct", False):
            return []
        return [f"sampler={self.name} needs a method that reconstructs its input (can_reconstruct: an "
                f"autoencoder), and method {getattr(method, 'name', '?')!r} does not"]

    def fit(self, method: Any, real: RealData) -> None:
        problems = self.requirement_problems(method)
        if problems:
            raise TypeError(problems[0])
        self._real = real

    def _sample(self, method: Any, n: int, generator: torch.Generator | None) -> Tensor:
        if self._real is None:
            raise RuntimeError("sampler=reconstruction: call fit(method, real) with real data "
                               "before sample()")
        stream = real_batches(self._real, self.batch_size, generator)
        parts, left = [], n
        with torch.no_grad():
            while left > 0:
                x = next(stream)[:left].to(method.device)
                parts.append(method.reconstruct(x))
                left -= x.shape[0]
        self.stats = {"draws_per_sample": 1.0}
        return torch.cat(parts)[:n] if parts else method.reconstruct(next(stream)[:0].to(method.device))
