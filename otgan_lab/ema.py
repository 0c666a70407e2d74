"""Exponential moving average of a network's weights (METHODS.md §12).

theta_ema <- beta * theta_ema + (1 - beta) * theta after every generator iteration, buffers (BatchNorm
statistics) copied from the live network so EMA weights never meet stale statistics. The shadow copy is not
registered with any optimizer and has no gradients. `applied(module)` swaps the EMA weights into the live
network for evaluation and swaps them back.
"""

from __future__ import annotations

import contextlib
import copy

import torch
from torch import nn


class EMA:
    def __init__(self, module: nn.Module, decay: float = 0.999, start_step: int = 0, warmup: bool = False):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        self.decay, self.start_step, self.warmup = decay, start_step, warmup
        self.shadow = copy.deepcopy(module).eval().requires_grad_(False)

    def decay_at(self, step: int) -> float:
        if step < self.start_step:
            return 0.0  # follow the live weights until EMA starts
        if self.warmup:
            t = step - self.start_step
            return min(self.decay, (1 + t) / (10 + t))
        return self.decay

    @torch.no_grad()
    def update(self, module: nn.Module, step: int) -> None:
        beta = self.decay_at(step)
        shadow = [p for p in self.shadow.parameters()]
        live = [p.detach() for p in module.parameters()]
        if beta == 0.0:
            torch._foreach_copy_(shadow, live)
        else:
            torch._foreach_lerp_(shadow, live, 1.0 - beta)
        for b_shadow, b_live in zip(self.shadow.buffers(), module.buffers()):
            b_shadow.copy_(b_live)

    @contextlib.contextmanager
    def applied(self, module: nn.Module):
        """Temporarily load the EMA weights into `module` (the live network keeps its identity)."""
        backup = copy.deepcopy(module.state_dict())
        module.load_state_dict(self.shadow.state_dict())
        try:
            yield module
        finally:
            module.load_state_dict(backup)

    def state_dict(self) -> dict:
        return self.shadow.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.shadow.load_state_dict(state)
