"""Standard ancestral sampling: z ~ prior, x = generate(z).

The baseline every post-hoc sampler (DRS, DOT, MH) is compared against on the same generator: draws latents
in chunks of ``batch_size`` under ``no_grad`` and eval mode, and returns the generator's outputs unchanged.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from otgan_lab.metrics.spec import frozen_specs
from otgan_lab.samplers.base import DRAWS_PER_SAMPLE, Sampler, generate_batched


class StandardSampler(Sampler):
    name = "standard"
    stat_specs = frozen_specs({"draws_per_sample": DRAWS_PER_SAMPLE})

    def __init__(self, batch_size: int = 1000) -> None:
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = batch_size

    def _sample(self, method: Any, n: int, generator: torch.Generator | None) -> Tensor:
        _, x = generate_batched(method, n, self.batch_size, generator)
        self.stats = {"draws_per_sample": 1.0}
        return x

    def __repr__(self) -> str:
        return f"StandardSampler(batch_size={self.batch_size})"
