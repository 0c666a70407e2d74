"""Differentiable optimiser steps for the exact unrolled GAN (Metz, Poole, Pfau, Sohl-Dickstein, ICLR 2017).

The generator is trained against D unrolled K optimiser steps ahead, θ_D^{k+1} = θ_D^k − step(∇f(θ_D^k)),
and back-propagates through the whole unroll, so each step must be written with out-of-place torch ops that
keep the autograd graph. These helpers reproduce torch.optim.Adam / SGD updates exactly, as functions of
(params, grads, state); use them with torch.func.functional_call and autograd.grad(create_graph=True).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

import torch
from torch import Tensor

__all__ = ["adam_state_from_optimizer", "differentiable_adam_step", "differentiable_sgd_step",
           "sgd_state_from_optimizer"]

# state[name] = {"exp_avg": Tensor, "exp_avg_sq": Tensor, "step": float} for Adam, {"momentum_buffer": Tensor}
# for SGD; a missing name means a fresh optimiser state (zeros, step 0).
OptState = dict[str, dict[str, Tensor | float]]


def _safe_sqrt(v: Tensor) -> Tensor:
    """sqrt(v) with derivative 0 instead of inf·0 = NaN where v == 0.

    With a zero second moment (fresh state and a zero gradient, e.g. a dead unit) d sqrt(v)/dv = inf, and
    the chain rule multiplies it by dv/dg = 2(1 − β2)·g = 0. Evaluating sqrt on a safe stand-in at those
    entries gives the same value and a zero derivative there. Where v > 0 but tiny the derivative is large
    and genuine: initialise v from the real optimiser (adam_state_from_optimizer) rather than from zeros.
    """
    positive = v > 0
    root = torch.sqrt(torch.where(positive, v, torch.ones_like(v)))
    return torch.where(positive, root, torch.zeros_like(v))


def _functional_step(
    params: Mapping[str, Tensor],
    grads: Mapping[str, Tensor | None],
    state: Mapping[str, Mapping[str, Tensor | float]] | None,
    update: Callable[[Tensor, Tensor, Mapping[str, Tensor | float] | None], tuple[Tensor, dict | None]],
) -> tuple[dict[str, Tensor], OptState]:
    """Apply update(p, g, old_state) -> (new_p, new_state or None) to every parameter with a gradient.

    Parameters whose grad is None keep their value and state, as torch.optim skips them.
    """
    state = state or {}
    new_params: dict[str, Tensor] = {}
    new_state: OptState = {}
    for name, p in params.items():
        g, old = grads.get(name), state.get(name)
        if g is None:
            new_params[name], entry = p, None if old is None else dict(old)
        else:
            new_params[name], entry = update(p, g, old)
        if entry is not None:
            new_state[name] = entry
    return new_params, new_state


def differentiable_adam_step(
    params: Mapping[str, Tensor],
    grads: Mapping[str, Tensor | None],
    state: Mapping[str, Mapping[str, Tensor | float]] | None = None,
    lr: float = 1e-3,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 0.0,
) -> tuple[dict[str, Tensor], OptState]:
    """One torch.optim.Adam step (amsgrad=False, L2 weight decay as in Adam, not AdamW), out of place.

    Returns (new_params, new_state); nothing is modified in place, so new_params are functions of params,
    grads and state in the autograd graph (pass grads from autograd.grad(..., create_graph=True) to
    differentiate through the step). Arithmetic follows torch's order so results match it to rounding:
    p ← p − lr/(1 − β1^t) · m / (sqrt(v)/sqrt(1 − β2^t) + eps).
    """
    beta1, beta2 = betas

    def update(p: Tensor, g: Tensor, old: Mapping[str, Tensor | float] | None) -> tuple[Tensor, dict]:
        if weight_decay != 0.0:
            g = g + weight_decay * p
        if old is None:
            m, v, step = torch.zeros_like(p), torch.zeros_like(p), 0.0
        else:
            m, v, step = old["exp_avg"], old["exp_avg_sq"], float(old["step"])
        step += 1.0
        m = torch.lerp(m, g, 1.0 - beta1)  # = β1·m + (1 − β1)·g, in torch.optim.Adam's own form
        v = beta2 * v + (1.0 - beta2) * g * g
        bias1 = 1.0 - beta1**step
        bias2_sqrt = (1.0 - beta2**step) ** 0.5
        denom = _safe_sqrt(v) / bias2_sqrt + eps
        return p - (lr / bias1) * (m / denom), {"exp_avg": m, "exp_avg_sq": v, "step": step}

    return _functional_step(params, grads, state, update)


def differentiable_sgd_step(
    params: Mapping[str, Tensor],
    grads: Mapping[str, Tensor | None],
    state: Mapping[str, Mapping[str, Tensor | float]] | None = None,
    lr: float = 1e-2,
    momentum: float = 0.0,
) -> tuple[dict[str, Tensor], OptState]:
    """One torch.optim.SGD step (dampening 0, no Nesterov, no weight decay), out of place.

    With momentum the buffer starts as the first gradient, b ← μ·b + g, p ← p − lr·b (torch's rule).
    Returns (new_params, new_state); the state is empty when momentum is 0.
    """

    def update(p: Tensor, g: Tensor, old: Mapping[str, Tensor | float] | None) -> tuple[Tensor, dict | None]:
        if momentum == 0.0:
            return p - lr * g, None
        buf = g if old is None else momentum * old["momentum_buffer"] + g
        return p - lr * buf, {"momentum_buffer": buf}

    return _functional_step(params, grads, state, update)


def adam_state_from_optimizer(
    optimizer: torch.optim.Optimizer, named_params: Mapping[str, Tensor] | Iterable[tuple[str, Tensor]]
) -> OptState:
    """Detached copies of Adam's (exp_avg, exp_avg_sq, step) for each named parameter, keyed by name.

    Parameters the optimiser has not stepped yet get no entry (the differentiable step then starts from
    zeros, like Adam). Read lr/betas/eps/weight_decay from optimizer.param_groups for the unrolled step.
    Raises for settings the differentiable step does not implement (amsgrad, maximize, AdamW decay).
    """
    for group in optimizer.param_groups:
        if group.get("amsgrad", False) or group.get("maximize", False):
            raise ValueError("differentiable_adam_step implements neither amsgrad nor maximize")
        decoupled = group.get("decoupled_weight_decay", isinstance(optimizer, torch.optim.AdamW))
        if decoupled and group.get("weight_decay", 0.0) != 0.0:
            raise ValueError("decoupled (AdamW) weight decay is not implemented by differentiable_adam_step")
    items = named_params.items() if isinstance(named_params, Mapping) else named_params
    state: OptState = {}
    for name, p in items:
        st = optimizer.state.get(p, {})
        if "exp_avg" not in st:
            continue
        step = st["step"]
        state[name] = {
            "exp_avg": st["exp_avg"].detach().clone(),
            "exp_avg_sq": st["exp_avg_sq"].detach().clone(),
            "step": float(step.item() if isinstance(step, Tensor) else step),
        }
    return state


def sgd_state_from_optimizer(optimizer: torch.optim.Optimizer,
                             named_params: Mapping[str, Tensor]) -> OptState:
    """Detached copies of SGD's momentum buffers, keyed by name (none for parameters without one)."""
    state: OptState = {}
    for name, p in named_params.items():
        buf = optimizer.state.get(p, {}).get("momentum_buffer")
        if buf is not None:
            state[name] = {"momentum_buffer": buf.detach().clone()}
    return state
