"""The method contract (DESIGN.md).

A method owns its networks, prior, losses and update schedule; it never owns the loop, AMP, EMA, logging
or files. The trainer calls `train_step(real, ctx)` once per generator iteration; the method draws as many
real batches as its schedule needs through `real(n)` and updates networks through `ctx.optimize(name,
loss)`. Samplers and metrics see only the public surface: `prior`, `generate`, `sample`, `critic`.
What a method offers them is one frozen `Capabilities` per class (`capabilities_for(options)` where an
option changes it), and what its config options must satisfy is `option_problems(options)`; shared code
reads both, never a method's type or name.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from otgan_lab.amp import StepContext, upcast
from otgan_lab.losses.penalties import r1_penalty
from otgan_lab.metrics.spec import Specs, frozen_specs
from otgan_lab.optim import build_optimizer

RealBatches = Callable[[int], torch.Tensor]
PRIOR_KINDS = ("normal", "uniform")


@dataclass(frozen=True)
class Capabilities:
    """What a method offers samplers, the builder and the trainer; one per class, fixed at construction."""

    #: has critic(x) -> (n,) scores (samplers DRS/DOT/MH need it)
    critic: bool = True
    #: critic(x) is a logit approximating log p_data/p_gen (DRS/MH may use it without calibration)
    logit_critic: bool = False
    #: BatchNorm in the critic is compatible with the update (not with per-sample penalties or unrolling)
    critic_batchnorm_ok: bool = True
    #: has reconstruct(x) = decoder(encoder(x)) (sampler=reconstruction)
    reconstructs: bool = False
    #: holds a semi-discrete OT map in latent space with extended_codes(n, ...) (sampler=aeot)
    latent_ot: bool = False
    #: the net that maps prior draws to samples: generate() runs it, EMA averages it, samplers use it
    generator_net: str = "generator"


def has_batchnorm(module: nn.Module) -> bool:
    """Whether a submodule normalises by batch statistics (each row's output then depends on the others)."""
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in module.modules())


def _capability(field: str) -> property:
    """A read-only attribute that reads one field of the instance's `capabilities`."""
    return property(lambda self: getattr(self.capabilities, field), doc=f"capabilities.{field}")


def _option(options: Mapping[str, Any], key: str, missing: Any = None) -> Any:
    """options["a"]["b"] for key "a.b"; `missing` where a part is absent (the constructor's default then
    applies)."""
    node: Any = options
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return missing
        node = node[part]
    return node


def with_penalties(loss: torch.Tensor, logs: dict[str, torch.Tensor],
                   **penalties: torch.Tensor | None) -> torch.Tensor:
    """loss + each penalty that is not None, each logged (detached) under its keyword."""
    for name, penalty in penalties.items():
        if penalty is not None:
            loss = loss + penalty
            logs[name] = penalty.detach()
    return loss


class Method(nn.Module):
    #: networks the model config must provide, by name
    required_nets: ClassVar[tuple[str, ...]] = ("generator", "critic")
    #: how to get them when the model lacks some (the end of the error message)
    model_hint: ClassVar[str] = "Choose a model that provides them."
    #: optimizer name -> the networks it updates; None: one optimizer per network, named after it
    optimizer_nets: ClassVar[Mapping[str, tuple[str, ...]] | None] = None
    #: this class's capabilities whatever its options (see capabilities_for)
    declared_capabilities: ClassVar[Capabilities] = Capabilities()
    #: integer options and their smallest allowed value (a schedule's step counts), see option_problems
    integer_options: ClassVar[Mapping[str, int]] = {}
    #: learning rates outside `optim` (dotted keys), see option_problems
    extra_learning_rates: ClassVar[tuple[str, ...]] = ()
    #: what each key fit_end returns means (display name, which direction is better)
    fit_end_specs: ClassVar[Specs] = frozen_specs({})

    @classmethod
    def capabilities_for(cls, options: Mapping[str, Any]) -> Capabilities:
        """The capabilities of an instance built with these config options (override where one matters)."""
        return cls.declared_capabilities

    @classmethod
    def real_batches_per_step(cls, options: Mapping[str, Any]) -> int:
        """Real batches (of batch_size) one generator iteration draws with these options: what a pass over
        the data costs in iterations (report budgets count epochs as data passes, otgan_lab/budget.py).
        1 here; methods with several critic steps or real draws per iteration override it."""
        return 1

    @classmethod
    def option_problems(cls, options: Mapping[str, Any]) -> list[str]:
        """What is wrong with the method's config options (keys as `method.<key>`), found before anything is
        built: every optimizer's lr and `extra_learning_rates` positive, `integer_options` in range."""
        problems = []
        optim = options.get("optim") or {}
        lr_keys = [f"optim.{net}.lr" for net, opt in optim.items()
                   if isinstance(opt, Mapping) and "lr" in opt]
        for key in (*lr_keys, *cls.extra_learning_rates):
            value = _option(options, key, missing=1.0)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                problems.append(f"method.{key} must be a positive learning rate (got {value})")
        for key, low in cls.integer_options.items():
            value = _option(options, key, missing=low)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                problems.append(f"method.{key} must be an integer >= {low} (got {value})")
        return problems

    def __init__(
        self,
        *,
        name: str,
        batch_size: int,
        prior: Mapping[str, Any],
        optim: Mapping[str, Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]],
        options: Mapping[str, Any] | None = None,
        **nets: nn.Module,
    ) -> None:
        """`options`: the subclass's own config options that `capabilities_for` reads (none by default)."""
        super().__init__()
        missing = [n for n in self.required_nets if n not in nets]
        if missing:
            raise ValueError(f"method {name!r} needs networks {list(self.required_nets)}; the model config "
                             f"is missing {missing}. {self.model_hint}")
        if prior["kind"] not in PRIOR_KINDS:
            raise ValueError(f"prior.kind must be one of {PRIOR_KINDS}, got {prior['kind']!r}")
        self.name = name
        self.batch_size = int(batch_size)
        self.prior_kind = str(prior["kind"])
        self.z_dim = int(prior["dim"])
        self.nets = nn.ModuleDict({k: v for k, v in nets.items() if k in self.required_nets})
        self._optim_factories = dict(optim)
        self._capabilities = type(self).capabilities_for(options or {})  # frozen; read-only below
        self.register_buffer("_device_anchor", torch.empty(0), persistent=False)

    # -- capabilities (read by samplers, build and the trainer) -------------------------------------------
    @property
    def capabilities(self) -> Capabilities:
        return self._capabilities

    # the names samplers and build read, each one field of `capabilities`
    has_critic = _capability("critic")
    critic_is_logit = _capability("logit_critic")
    allows_critic_batchnorm = _capability("critic_batchnorm_ok")
    can_reconstruct = _capability("reconstructs")
    has_latent_ot = _capability("latent_ot")

    @property
    def generator_module(self) -> nn.Module:
        """The net that maps prior draws to samples (generator or decoder)."""
        return self.nets[self.capabilities.generator_net]

    @property
    def ema_module(self) -> nn.Module:
        """What the trainer's EMA averages: the generating net, whose averaged weights samplers then use."""
        return self.generator_module

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
        return self.generator_module(z)

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
        if "_critic_bn" not in self.__dict__:  # cached outside nn.Module's attribute machinery
            self.__dict__["_critic_bn"] = has_batchnorm(self.critic_module)
        return self.__dict__["_critic_bn"]

    def critic_with_r1(self, x: torch.Tensor, gamma: float, ctx: StepContext
                       ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(critic(x), R1) for a real batch x scored on its own, so that the input gradient runs over its rows
        only: R1 = (gamma/2) E||grad_x critic(x)||^2 (Mescheder et al. 2018); None when gamma is 0."""
        if gamma <= 0:
            return self.critic(x), None
        x = x.detach().requires_grad_(True)
        scores = self.critic(x)
        return scores, r1_penalty(ctx.input_grad(scores, x, "critic"), gamma)

    @property
    def critic_module(self) -> nn.Module:
        return self.nets["critic"]

    def critic_parameters(self) -> Iterable[nn.Parameter]:
        return self.critic_module.parameters()

    # -- training ---------------------------------------------------------------------------------------
    def configure_optimizers(self, implementation: str = "auto") -> dict[str, torch.optim.Optimizer]:
        """One optimizer per configured group; `implementation` picks torch's kernel (otgan_lab.optim)."""
        groups = self.optimizer_nets or {net: (net,) for net in self.nets}
        unknown = [n for n in self._optim_factories if n not in groups]
        if unknown:
            raise ValueError(f"method {self.name!r}: optimizers {unknown} unknown; expected {list(groups)}")
        return {name: build_optimizer(make, [p for net in groups[name] for p in self.nets[net].parameters()],
                                      implementation)
                for name, make in self._optim_factories.items()}

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
    """Shared by the autoencoder methods (AE-OT, AE-OT-GAN, WAE): the decoder generates."""

    required_nets = ("encoder", "decoder")
    model_hint = "An autoencoder method: use model=ae (or ae_conv / ae_mlp)."
    declared_capabilities = Capabilities(critic=False, reconstructs=True, generator_net="decoder")
    optimizer_nets = {"autoencoder": ("encoder", "decoder")}

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.nets["encoder"](x)

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """decoder(encoder(x)): the autoencoder's reconstructions (the floor of R5's AE-OT table)."""
        return self.nets["decoder"](self.encode(x))
