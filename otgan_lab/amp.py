"""Precision policy and the step context that methods optimise through.

A method never calls backward() or step(): it calls `ctx.optimize(name, loss)`, so loss scaling (fp16),
gradient clipping and the "backward outside autocast" rule live here once. Input gradients for penalties go
through `ctx.input_grad`, which follows PyTorch's AMP gradient-penalty recipe (differentiate the scaled
output, then divide by the scale) so the penalty sees true gradients under fp16.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

PRECISIONS = ("fp32", "bf16", "fp16", "auto")


class PrecisionError(ValueError):
    """The requested precision cannot run on this device."""


@dataclass(frozen=True)
class Precision:
    name: str  # fp32 | bf16 | fp16 (resolved, never auto)
    device_type: str  # cpu | cuda
    #: fp16 only: each GradScaler's first loss scale (GradScaler's own default). It halves on every overflow
    #: and doubles after 2000 clean steps, so this only decides how many of the first steps are skipped.
    init_scale: float = 2.0**16

    @property
    def dtype(self) -> torch.dtype | None:
        return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.name)

    @property
    def uses_scaler(self) -> bool:
        return self.name == "fp16"

    def autocast(self):
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device_type, dtype=self.dtype)


def upcast(t: torch.Tensor) -> torch.Tensor:
    """float16/bfloat16 -> float32; float32 and float64 unchanged (losses and scores keep full precision)."""
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t


class _FullPrecision:
    """Forward hooks that run one module with autocast off and its floating inputs in float32.

    Hooks rather than a wrapper module: the state_dict keys stay those of the bare network, and a deep copy
    (the EMA's) carries the hooks along without pointing back at the original. The post-hook is registered
    with always_call, so an exception inside the module cannot leave autocast switched off.
    """

    def __init__(self, device_type: str) -> None:
        self.device_type = device_type
        self.contexts: list[contextlib.AbstractContextManager | None] = []

    def before(self, module: nn.Module, args: tuple) -> tuple:
        if not torch.is_autocast_enabled(self.device_type):
            self.contexts.append(None)
            return args
        context = torch.autocast(self.device_type, enabled=False)
        context.__enter__()
        self.contexts.append(context)
        return tuple(upcast(a) if isinstance(a, torch.Tensor) else a for a in args)

    def after(self, module: nn.Module, args: tuple, output):
        context = self.contexts.pop() if self.contexts else None
        if context is not None:
            context.__exit__(None, None, None)
        return output


def keep_fp32(root: nn.Module, paths: Sequence[str], device_type: str) -> list[str]:
    """Run the submodules of `root` named by dotted `paths` (e.g. "critic", "generator.head") in float32 while
    the rest of the step runs under bf16/fp16 autocast. Weights and optimizer state are float32 under autocast
    anyway; this chooses which forward computations (and their backward) stay in full precision. A no-op
    outside autocast. Returns the paths it applied; raises ValueError naming the valid paths for a wrong one.
    """
    named = dict(root.named_modules())
    unknown = [p for p in paths if p not in named or p == ""]
    if unknown:
        valid = [name for name in named if name and name.count(".") <= 1]
        raise ValueError(f"fp32_modules: no module {unknown} in this model; paths name the method's networks "
                         f"and their layers, e.g. {', '.join(valid[:12])}")
    for path in paths:
        hooks = _FullPrecision(device_type)
        module = named[path]
        module.register_forward_pre_hook(hooks.before)
        module.register_forward_hook(hooks.after, always_call=True)
    return list(paths)


def resolve_precision(
    requested: str, device: torch.device | str, *, allow_cpu_fp16: bool = False
) -> Precision:
    """fp32 | bf16 | fp16 | auto -> a concrete policy; clear errors for what the device cannot do.

    auto: bf16 on GPUs that support it, else fp16; fp32 on CPUs. bf16 autocast is faster on CPUs with bf16
    instructions (1.1-1.7x here) and, since the autocast cache is cleared after every update, trains WGAN-GP
    as fp32 does and the GAN within seed noise of it, but with twice fp32's seed spread (README, "bf16"), so
    a CPU gets it only when asked for.

    allow_cpu_fp16: let fp16 (float16 autocast, one GradScaler("cpu") per optimizer) run on a CPU. It is
    for code, not for users: the tests run the whole fp16 path (loss scaling, the penalty recipe, skipped
    steps, scaler checkpoints) on CPU with it, so the CUDA path is not first run by a user. It is no config
    key: a user asking for precision=fp16 on a CPU is still refused (bf16 is the CPU's reduced precision).
    """
    device_type = torch.device(device).type
    if requested not in PRECISIONS:
        raise PrecisionError(f"unknown precision {requested!r}; choose one of {', '.join(PRECISIONS)}")
    if requested == "auto":
        if device_type == "cuda":
            return Precision("bf16" if torch.cuda.is_bf16_supported() else "fp16", device_type)
        return Precision("fp32", device_type)
    if requested == "fp16" and device_type != "cuda" and not (allow_cpu_fp16 and device_type == "cpu"):
        raise PrecisionError(
            "precision=fp16 (float16 autocast with loss scaling) needs a CUDA device, and this run is on "
            f"{device_type}. Use precision=bf16 (bfloat16 autocast works on CPU) or precision=fp32."
        )
    if requested == "bf16" and device_type == "cuda" and not torch.cuda.is_bf16_supported():
        raise PrecisionError("this GPU does not support bfloat16; use precision=fp16 or fp32")
    return Precision(requested, device_type)


@dataclass
class StepContext:
    """What a method's train_step may use. `step` is the index of the current generator iteration."""

    optimizers: dict[str, torch.optim.Optimizer]
    precision: Precision
    grad_clip: float | None = None
    step: int = 0
    scalers: dict[str, torch.amp.GradScaler] = field(default_factory=dict)
    #: device bool: a loss scaler skipped an optimizer step during this generator iteration (None: none did)
    skipped: torch.Tensor | None = None

    def __post_init__(self) -> None:
        self._params = {
            name: [p for group in opt.param_groups for p in group["params"] if p.requires_grad]
            for name, opt in self.optimizers.items()
        }
        if self.precision.uses_scaler and not self.scalers:
            # One GradScaler per optimizer: each network's loss scale adapts to its own overflows. The
            # scaler's device type is the autocast one (a "cuda" scaler disables itself on a CPU-only host).
            self.scalers = {
                name: torch.amp.GradScaler(self.precision.device_type, init_scale=self.precision.init_scale)
                for name in self.optimizers
            }

    def autocast(self):
        return self.precision.autocast()

    def begin_step(self, step: int) -> None:
        """A new generator iteration: its index, and (fp16) no loss-scaler skip seen yet."""
        self.step = step
        self.skipped = None

    def _note_skip(self, scale_before: torch.Tensor, scaler: torch.amp.GradScaler) -> None:
        """A scaler that lowered its scale skipped its optimizer step (an inf/NaN gradient, by design under
        fp16); kept as a device flag, no host sync."""
        skipped = scaler._scale < scale_before
        self.skipped = skipped if self.skipped is None else self.skipped | skipped

    def optimize(self, name: str, loss: torch.Tensor) -> None:
        """Zero the named optimizer's gradients, backpropagate `loss` into its parameters only, step."""
        opt, params = self.optimizers[name], self._params[name]
        scaler = self.scalers.get(name)
        for p in params:
            p.grad = None
        # Backward outside autocast (the backward ops follow the forward's dtypes anyway); `inputs=`
        # keeps other networks' .grad untouched, so no freezing is needed between updates.
        with torch.autocast(self.precision.device_type, enabled=False):
            (scaler.scale(loss) if scaler else loss).backward(inputs=params)
            if self.grad_clip:
                if scaler:
                    scaler.unscale_(opt)
                torch.nn.utils.clip_grad_norm_(params, self.grad_clip)
            if scaler:
                scale_before = scaler._scale.clone()
                scaler.step(opt)
                scaler.update()
                self._note_skip(scale_before, scaler)
            else:
                opt.step()
        # autocast caches the low-precision copy of each weight until the outermost autocast region exits,
        # which is the whole train_step: without this, every later forward in the step (the next critic
        # iteration, the generator's pass through the critic) would run on the weights before this update.
        torch.clear_autocast_cache()

    def input_grad(self, outputs: torch.Tensor, inputs: torch.Tensor, optimizer: str) -> torch.Tensor:
        """d(sum outputs)/d inputs with create_graph=True, unscaled under fp16 (AMP penalty recipe)."""
        scaler = self.scalers.get(optimizer)
        total = outputs.float().sum()
        if scaler is None:
            return torch.autograd.grad(total, inputs, create_graph=True)[0]
        (scaled,) = torch.autograd.grad(scaler.scale(total), inputs, create_graph=True)
        # The scale as a device tensor: dividing by it avoids the host sync of get_scale().
        return scaled / scaler._get_scale_async().to(scaled.dtype)

    def state_dict(self) -> dict:
        return {name: s.state_dict() for name, s in self.scalers.items()}

    def load_state_dict(self, state: dict) -> None:
        for name, s in self.scalers.items():
            if name in state:
                s.load_state_dict(state[name])
