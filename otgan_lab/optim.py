"""Optimizers from the config's `_partial_` targets, on the fastest kernel torch has for the
parameters' device.

The method config says which algorithm and hyperparameters (Adam 1e-4, betas (0.5, 0.9), ...); how the update
is computed is the trainer's business (`trainer.optimizer_impl`). Off CUDA, torch defaults to the
per-parameter for-loop, whose Adam allocates fresh temporaries for sqrt and div on every parameter and every
step: on the MNIST MLP that was half of a gan iteration on the CPU. The fused kernel computes the same update
in one pass (equal to rounding), so `auto` takes it wherever torch has it and falls back to the multi-tensor
(foreach) path, then to torch's default.

- auto: fused where the optimizer and device support it, else foreach where the optimizer has it
- fused / foreach: required; an optimizer or device without it is an error naming both
- for_loop: torch's single-tensor reference implementation (foreach=False)
A `fused` or `foreach` key set in the optimizer's own config always wins.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable

import torch

IMPLEMENTATIONS = ("auto", "fused", "foreach", "for_loop")
OptimizerFactory = Callable[..., torch.optim.Optimizer]


def _unwrap(factory: OptimizerFactory) -> tuple[Callable, dict]:
    """(optimizer class, keywords already bound) of a functools.partial chain (Hydra's `_partial_: true`)."""
    keywords: dict = {}
    while isinstance(factory, functools.partial):
        keywords = {**factory.keywords, **keywords}
        factory = factory.func
    return factory, keywords


def _fused_devices() -> tuple[str, ...]:
    from torch.optim.optimizer import _get_fused_kernels_supported_devices

    return tuple(_get_fused_kernels_supported_devices())


def implementation_kwargs(factory: OptimizerFactory, device_type: str, implementation: str = "auto") -> dict:
    """The keyword arguments that select `implementation` for this optimizer on `device_type`."""
    if implementation not in IMPLEMENTATIONS:
        raise ValueError(f"unknown optimizer implementation {implementation!r}; choose one of "
                         f"{', '.join(IMPLEMENTATIONS)}")
    cls, bound = _unwrap(factory)
    if "fused" in bound or "foreach" in bound:
        return {}  # the optimizer's own config chose
    accepted = inspect.signature(cls).parameters
    name = getattr(cls, "__name__", repr(cls))
    has_fused = "fused" in accepted and device_type in _fused_devices()
    has_foreach = "foreach" in accepted
    if implementation == "auto":
        return {"fused": True} if has_fused else {"foreach": True} if has_foreach else {}
    if implementation == "fused":
        if not has_fused:
            raise ValueError(f"trainer.optimizer_impl=fused: torch has no fused {name} on {device_type}; use "
                             "trainer.optimizer_impl=auto (fused where available, else foreach)")
        return {"fused": True}
    if not has_foreach:
        raise ValueError(f"trainer.optimizer_impl={implementation}: {name} has no foreach switch; use "
                         "trainer.optimizer_impl=auto")
    return {"foreach": implementation == "foreach"}


def build_optimizer(factory: OptimizerFactory, params: Iterable[torch.nn.Parameter],
                    implementation: str = "auto") -> torch.optim.Optimizer:
    """factory(params) with the implementation chosen by `implementation_kwargs`."""
    params = list(params)
    device_type = params[0].device.type if params else "cpu"
    return factory(params, **implementation_kwargs(factory, device_type, implementation))
