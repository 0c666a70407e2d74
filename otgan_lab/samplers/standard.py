"""Standard ancestral sampling: z ~ prior, x = generate(z).

The baseline every post-hoc sampler (DRS, DOT, MH) is compared against on the same generator: draws latents
in chunks of ``batch_size`` under ``no_grad`` and eval mode, and returns the generator's outputs unchanged.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from otgan_lab.samplers.base import ChunkedSampler, generate_batched


class StandardSampler(ChunkedSampler):
    name = "standard"

    def _sample(self, method: Any, n: int, generator: torch.Generator | None) -> Tensor:
        _, x = generate_batched(method, n, self.batch_size, generator)
        self.stats = {"draws_per_sample": 1.0}
        return x
