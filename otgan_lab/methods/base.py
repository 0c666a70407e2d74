"""The method contract (DESIGN.md).

A method owns its networks, prior, losses and update schedule; it never owns the loop, AMP, EMA, logging
or files. The trainer calls `train_step(real, ctx)` once per generator iteration; the method draws as many
real batches as its schedule needs through `real(n)` and updates networks through `ctx.optimize(name,
loss)`. Samplers and metrics see only the public surface: `prior`, `generate`, `sample`, `critic`.
Capabilities are declared as class attributes, never tested by type in shared code.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar

import torch
from torch import nn

from otgan_lab.amp import StepContext, upcast
from otgan_lab.metrics.spec import Specs, frozen_specs
from otgan_lab.optim import build_optimizer

RealBatches = Callable[[int], torch.Tensor]
PRIOR_KINDS = ("normal", "uniform")


class Method(nn.Module):
    #: networks the model config must provide, by name (also the names of the optimizers)
    required_nets: ClassVar[tuple[str, ...]] = ("generator", "critic")
    #: has a critic(x) that scores samples (samplers DRS/DOT/MH need it)
    has_critic: ClassVar[bool] = True
    #: critic(x) is a logit approximating log p_data/p_gen (DRS/MH may use it without calibration)
    critic_is_logit: ClassVar[bool] = False
    #: whether BatchNorm in the critic is compatible with the method (no for per-sample penalties)
    allows_critic_batchnorm: ClassVar[bool] = True
    #: the network whose weights EMA averages and samplers use
    ema_net: ClassVar[str] = "generator"
    #: what each key fit_end returns means (display name, which direction is better)
    fit_end_specs: ClassVar[Specs] = frozen_specs({})
    #: has reconstruct(x) = decoder(encoder(x)) (sampler=reconstruction)
    can_reconstruct: ClassVar[bool] = False
    #: holds a semi-discrete OT map in latent space with extended_codes(n, ...) (sampler=aeot)
    has_latent_ot: ClassVar[bool] = False

    def __init__(
        self,
        *,
        name: str,
        batch_size: int,
        prior: Mapping[str, Any],
        optim: Mapping[str, Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]],
        **nets: nn.Module,
    ) -> None:
        super().__init__()
        missing = [n for n in self.required_nets if n not in nets]
        if missing:
            raise ValueError(
                f"method {name!r} needs networks {list(self.required_nets)}; the model config is missing "
                f"{missing}. Choose a model that provides them."
            )
        if prior["kind"] not in PRIOR_KINDS:
            raise ValueError(f"prior.kind must be one of {PRIOR_KINDS}, got {prior['kind']!r}")
        self.name = name
        self.batch_size = int(batch_size)
        self.prior_kind = str(prior["kind"])
        self.z_dim = int(prior["dim"])
        self.nets = nn.ModuleDict({k: v for k, v in nets.items() if k in self.required_nets})
        self._optim_factories = dict(optim)
        self.register_buffer("_device_anchor", torch.empty(0), persistent=False)

    # -- public surface ---------------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return self._device_anchor.device

    def prior(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n latent codes: N(0, I) or U[-1, 1]^d; drawn from ``generator`` (on its device) when given."""
        device = generator.device if generator is not None else self.device
        if self.prior_kind == "normal":
            z = torch.randn(n, self.z_dim, device=device, generator=generator)
        else:
            z = torch.rand(n, self.z_dim, device=device, generator=generator).mul_(2).sub_(1)
        return z.to(self.device)

    def generate(self, z: torch.Tensor) -> torch.Tensor:
        return self.nets[self.ema_net](z)

    def sample(self, n: int) -> torch.Tensor:
        return self.generate(self.prior(n))

    def critic(self, x: torch.Tensor) -> torch.Tensor:
        """Raw score (n,): a logit for GAN-type methods, a critic value for Wasserstein ones; at least float32
        under bf16/fp16 autocast, where the last layer emits 8 mantissa bits: a saturated logit's sigmoid
        (every GAN loss and DRS) would round 1 - sigmoid(l) to 0 or double it."""
        return upcast(self.nets["critic"](x))

    def critic_real_fake(self, real: torch.Tensor, fake: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Critic scores of a real and a generated batch, for a critic loss.

        One pass over [real; fake] when the critic's rows are independent (no BatchNorm): one GEMM per layer
        instead of two, same numbers. With BatchNorm, two passes, so each batch is normalised by its own
        statistics as in the papers. Not for input-gradient penalties: an input gradient taken through a
        fused pass would run over every row.
        """
        if self._critic_has_batchnorm():
            return self.critic(real), self.critic(fake)
        scores = self.critic(torch.cat([real, fake.to(real.dtype)]))
        return scores[: real.shape[0]], scores[real.shape[0]:]

    def _critic_has_batchnorm(self) -> bool:
        has_bn = self.__dict__.get("_critic_bn")  # cached outside nn.Module's attribute machinery
        if has_bn is None:
            has_bn = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in self.critic_module.modules())
            self.__dict__["_critic_bn"] = has_bn
        return has_bn

    @property
    def critic_module(self) -> nn.Module:
        return self.nets["critic"]

    def critic_parameters(self) -> Iterable[nn.Parameter]:
        return self.critic_module.parameters()

    @property
    def ema_module(self) -> nn.Module:
        return self.nets[self.ema_net]

    # -- training ---------------------------------------------------------------------------------------
    def configure_optimizers(self, implementation: str = "auto") -> dict[str, torch.optim.Optimizer]:
        """One optimizer per configured network; `implementation` picks torch's kernel (otgan_lab.optim)."""
        unknown = [n for n in self._optim_factories if n not in self.nets]
        if unknown:
            raise ValueError(f"method {self.name!r}: optimizers for unknown networks {unknown}")
        return {n: build_optimizer(make, self.nets[n].parameters(), implementation)
                for n, make in self._optim_factories.items()}

    def train_step(self, real: RealBatches, ctx: StepContext) -> dict[str, torch.Tensor]:
        """One generator iteration; returns detached scalar tensors to log (no .item() here)."""
        raise NotImplementedError

    def fit_end(self, data: Any, ctx: StepContext) -> dict[str, float]:
        """Optional post-training solve (e.g. AE-OT's OT map); results must live in buffers."""
        return {}

    def fake_batch(self, n: int) -> torch.Tensor:
        """Generated samples for a critic update, with no graph back into the generator."""
        with torch.no_grad():
            return self.sample(n)


class AutoEncoderMethod(Method):
    """Shared by the autoencoder methods (AE-OT, AE-OT-GAN, WAE): optimizers over groups of nets."""

    required_nets = ("encoder", "decoder")
    has_critic = False
    ema_net = "decoder"
    can_reconstruct = True
    #: optimizer name -> the networks it updates
    optimizer_nets: ClassVar[dict[str, tuple[str, ...]]] = {"autoencoder": ("encoder", "decoder")}

    def __init__(self, **kw):
        missing = [n for n in self.required_nets if n not in kw]
        if missing:
            raise ValueError(f"method {kw.get('name')!r} needs an autoencoder model with nets {list(self.required_nets)} "
                             f"(missing {missing}): use model=ae (or ae_conv / ae_mlp)")
        super().__init__(**kw)

    def configure_optimizers(self, implementation: str = "auto") -> dict[str, torch.optim.Optimizer]:
        unknown = [n for n in self._optim_factories if n not in self.optimizer_nets]
        if unknown:
            raise ValueError(f"method {self.name!r}: optimizers {unknown} unknown; expected {list(self.optimizer_nets)}")
        return {name: build_optimizer(make, [p for net in self.optimizer_nets[name] for p in self.nets[net].parameters()],
                                      implementation)
                for name, make in self._optim_factories.items()}

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.nets["encoder"](x)

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """decoder(encoder(x)): the autoencoder's reconstructions (the floor of R5's AE-OT table)."""
        return self.nets["decoder"](self.encode(x))
