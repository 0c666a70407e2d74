"""Sampler contract: post-hoc sampling from a trained method through its public surface only.

A sampler turns a trained method into ``n`` samples in data space. It never imports ``otgan_lab.methods``;
it duck-types the method's public surface (see ``MethodLike``) so that samplers stay apart from models
(DESIGN.md). After ``sample`` the sampler's ``stats`` hold floats to log (acceptance rate, K_eff, ...).
Samplers that need real data (critic calibration) say so with ``needs_real_data`` and get it in ``fit``.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable, Iterable, Iterator
from typing import Any, ClassVar, Protocol

import torch
from torch import Tensor, nn

from otgan_lab.metrics.spec import MetricSpec, Specs, frozen_specs

# Real data for calibration: a callable ``real(batch_size) -> Tensor``, one tensor holding a whole split,
# or any re-iterable of batches (a DataLoader). Samples are in data space, like ``method.generate``.
RealData = Callable[[int], Tensor] | Tensor | Iterable[Tensor]


# generator draws per returned sample: the sampler's cost, lower is cheaper
DRAWS_PER_SAMPLE = MetricSpec("generator draws per sample", "min")


class MethodLike(Protocol):
    """The public surface of a trained method that samplers use (documentation only; never checked)."""

    prior_kind: str  # "normal" or "uniform" (U[-1, 1]^d)
    has_critic: bool
    critic_is_logit: bool  # True: critic(x) ~ log p_data/p_gen; False: a WGAN critic value

    def prior(self, n: int, generator: torch.Generator | None = None) -> Tensor: ...

    def generate(self, z: Tensor) -> Tensor: ...

    def critic(self, x: Tensor) -> Tensor: ...


class Sampler:
    """Base class. Subclasses implement ``_sample``; ``sample`` resets ``stats`` and sets eval mode."""

    name: str = "base"
    # what each key of ``stats`` means (logged as sampler/<key>); every key a subclass puts in stats
    stat_specs: ClassVar[Specs] = frozen_specs({})

    def __init__(self) -> None:
        self.stats: dict[str, float] = {}

    @property
    def needs_real_data(self) -> bool:
        """True when ``fit(method, real)`` must be called before ``sample``."""
        return False

    def requirement_problems(self, method: Any) -> list[str]:
        """What this sampler needs that ``method`` does not declare (its capability flags); empty when the
        pair works. Checked before training, so a run never trains and then fails at its evaluation."""
        return []

    def fit(self, method: Any, real: RealData) -> None:
        """Prepare the sampler for ``method`` with real data (calibration); a no-op by default."""

    def sample(self, method: Any, n: int, *, generator: torch.Generator | None = None) -> Tensor:
        """Return exactly ``n`` samples in data space, on the method's device."""
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        self.stats = {}
        with eval_mode(method):
            return self._sample(method, n, generator)

    def _sample(self, method: Any, n: int, generator: torch.Generator | None) -> Tensor:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class ChunkedSampler(Sampler):
    """A sampler returning one generator output per sample, computed ``batch_size`` samples at a time
    (standard, reconstruction, aeot): it costs one draw per sample."""

    stat_specs = frozen_specs({"draws_per_sample": DRAWS_PER_SAMPLE})

    def __init__(self, batch_size: int = 1000) -> None:
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = batch_size

    def __repr__(self) -> str:
        return f"{type(self).__name__}(batch_size={self.batch_size})"


@contextlib.contextmanager
def eval_mode(method: Any) -> Iterator[None]:
    """Put every submodule of ``method`` in eval mode and restore each one's own flag afterwards.

    Per-module restore matters: a method may keep, e.g., a frozen feature net in eval while training.
    Methods that are not ``nn.Module`` are left as they are.
    """
    if not isinstance(method, nn.Module):
        yield
        return
    flags = [(m, m.training) for m in method.modules()]
    method.eval()
    try:
        yield
    finally:
        for m, was_training in flags:
            m.training = was_training


def draw_latents(method: Any, n: int, generator: torch.Generator | None = None) -> Tensor:
    """Latent codes from the method's prior; reproducible from ``generator`` when one is given.

    Methods whose ``prior`` takes a ``generator`` keyword (every otgan_lab method) draw from it, so a
    method with its own code distribution (AE-OT's OT map) keeps it. For a duck-typed method whose
    ``prior(n)`` takes no generator, we redraw from the declared ``prior_kind`` with the shape and dtype of
    ``method.prior(1)``, on the generator's device, then move to the method's.
    """
    if generator is None:
        return method.prior(n)
    if "generator" in inspect.signature(method.prior).parameters:
        return method.prior(n, generator=generator)
    ref = method.prior(1)
    shape = (n, *ref.shape[1:])
    if method.prior_kind == "normal":
        z = torch.randn(shape, generator=generator, device=generator.device, dtype=ref.dtype)
    elif method.prior_kind == "uniform":
        z = torch.rand(shape, generator=generator, device=generator.device, dtype=ref.dtype) * 2 - 1
    else:
        raise ValueError(f"unknown prior_kind {method.prior_kind!r}; expected 'normal' or 'uniform'")
    return z.to(ref.device)


def uniforms(n: int, device: torch.device, generator: torch.Generator | None = None) -> Tensor:
    """``n`` float64 draws from U[0, 1) on ``device`` (drawn on the generator's device when given)."""
    if generator is None:
        return torch.rand(n, dtype=torch.float64, device=device)
    return torch.rand(n, dtype=torch.float64, generator=generator, device=generator.device).to(device)


def flat_norm(x: Tensor) -> Tensor:
    """Per-sample L2 norm over all non-batch dimensions: (n, ...) -> (n,)."""
    return x.flatten(1).norm(dim=1)


def real_batches(real: RealData, batch_size: int,
                 generator: torch.Generator | None = None) -> Iterator[Tensor]:
    """An endless stream of real batches from any ``RealData`` form (re-iterating an exhausted loader)."""
    if isinstance(real, Tensor):
        device = generator.device if generator is not None else torch.device("cpu")
        while True:
            idx = torch.randint(len(real), (batch_size,), generator=generator, device=device)
            yield real[idx.to(real.device)]
    elif callable(real):
        while True:
            yield real(batch_size)
    else:
        while True:
            empty = True
            for batch in real:
                empty = False
                # DataLoaders of (x, y) pairs: keep the samples
                yield batch[0] if isinstance(batch, (tuple, list)) else batch
            if empty:
                raise ValueError("real data iterable is empty")


@torch.no_grad()
def generate_batched(
    method: Any, n: int, batch_size: int, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """Draw ``n`` latents and their samples in chunks of ``batch_size``: returns (z (n, ...), x (n, ...))."""
    zs, xs = [], []
    for start in range(0, n, batch_size):
        z = draw_latents(method, min(batch_size, n - start), generator)
        zs.append(z)
        xs.append(method.generate(z))
    if not xs:  # n == 0: keep the shapes and devices of a real draw
        z = draw_latents(method, 1, generator)
        return z[:0], method.generate(z)[:0]
    return torch.cat(zs), torch.cat(xs)
