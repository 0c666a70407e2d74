"""OT-GAN (METHODS.md §6) and unrolled GAN (§8): update schedule, envelope gradient, unrolled gradients
against finite differences of the method's own computation, and config composition with Hydra.

The unrolled checks use the scalar model D(x) = σ(ψx + b), G(z) = θ + z in float64; every gradient is taken
through UnrolledGAN.train_step or UnrolledGAN.unrolled_generator_loss, never through a re-implementation.
"""

from __future__ import annotations

import copy
from functools import partial

import pytest
import torch
from hydra import compose, initialize_config_dir
from torch import nn

import otgan_lab.ot.sinkhorn as sinkhorn_module
from otgan_lab.amp import Precision, StepContext
from otgan_lab.build import build_dataset, build_method
from otgan_lab.losses.adversarial import gan_generator_loss
from otgan_lab.methods.otgan import OTGAN
from otgan_lab.methods.unrolled import UnrolledGAN
from otgan_lab.nets.mlp import MLPCritic, MLPGenerator
from otgan_lab.paths import conf_dir
from tests.helpers import recording_context_class

FP32 = Precision("fp32", "cpu")


def _compose(*overrides: str):
    with initialize_config_dir(version_base="1.3", config_dir=str(conf_dir())):
        return compose("config", overrides=["logger=none", *overrides])


RecordingContext = recording_context_class()


# ----------------------------------------------------------------------------------------------------------
# OT-GAN


def _tiny_otgan(loss: str = "energy", batch_size: int = 16) -> OTGAN:
    torch.manual_seed(0)
    adam = partial(torch.optim.Adam, lr=1e-3, betas=(0.5, 0.999))
    return OTGAN(name="otgan", batch_size=batch_size, prior={"kind": "uniform", "dim": 2},
                 optim={"generator": adam, "critic": adam}, loss=loss, critic_out_dim=8,
                 sinkhorn_eps=0.05, sinkhorn_iters=50, sinkhorn_tol=None,
                 generator=MLPGenerator(2, (2,), hidden=(16,)),
                 critic=MLPCritic((2,), hidden=(16,), out_dim=8))


def _points(n: int) -> torch.Tensor:
    return torch.randn(n, 2) + torch.tensor([1.0, -1.0])


@pytest.mark.parametrize("loss", ["energy", "cross_entropy"])
def test_otgan_critic_updates_once_every_four_iterations(loss):
    method = _tiny_otgan(loss)
    ctx = RecordingContext(method.configure_optimizers(), FP32)
    for t in range(8):
        ctx.step = t
        method.train_step(_points, ctx)
    assert ctx.updates == ["critic", "generator", "generator", "generator"] * 2


def test_otgan_sinkhorn_plan_gets_no_gradient(monkeypatch):
    method = _tiny_otgan()
    seen = []

    def recording_sinkhorn(cost, *args, **kwargs):
        result = solve(cost, *args, **kwargs)
        seen.append((cost.requires_grad, result.plan))
        return result

    solve = sinkhorn_module.sinkhorn
    monkeypatch.setattr(sinkhorn_module, "sinkhorn", recording_sinkhorn)
    ctx = StepContext(method.configure_optimizers(), FP32)
    for t in (0, 1):  # a critic and a generator iteration
        ctx.step = t
        out = method.train_step(_points, ctx)
        assert torch.isfinite(out["energy_distance"])
    assert len(seen) == 2
    for cost_had_grad, plan in seen:
        assert cost_had_grad  # the gradient reaches the embeddings through the cost...
        assert not plan.requires_grad and plan.grad_fn is None  # ...and never through the plan
    generator_grads = [p.grad for p in method.nets["generator"].parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in generator_grads)
    assert any(g.abs().sum() > 0 for g in generator_grads)


def test_otgan_public_critic_surface():
    energy, ablation = _tiny_otgan("energy"), _tiny_otgan("cross_entropy")
    x = _points(5)
    assert not energy.has_critic
    with pytest.raises(NotImplementedError, match="no scalar critic"):
        energy.critic(x)
    torch.testing.assert_close(energy.embed(x).norm(dim=1), torch.ones(5))
    assert ablation.has_critic and ablation.critic_is_logit
    assert ablation.capabilities == type(ablation).capabilities_for({"loss": "cross_entropy"})
    assert ablation.critic(x).shape == (5,)
    torch.testing.assert_close(ablation.critic_module(x), ablation.critic(x))
    assert ablation.embed(x).shape == (5, 8)
    # The logit head is a critic parameter: the critic optimizer updates it.
    critic_groups = ablation.configure_optimizers()["critic"].param_groups
    critic_params = {id(p) for g in critic_groups for p in g["params"]}
    assert id(ablation.nets["critic"][1].weight) in critic_params


@pytest.mark.parametrize("loss", ["energy", "cross_entropy"])
def test_otgan_few_steps_on_ring8_are_finite_and_move_both_nets(loss):
    cfg = _compose("method=otgan", "dataset=ring8", "batch_size=64", f"method.loss={loss}",
                   "method.sinkhorn_iters=100", "dataset.n_points=2000")
    torch.manual_seed(0)
    method = build_method(cfg, torch.device("cpu"))
    data = build_dataset(cfg, 0, torch.device("cpu"))
    before = copy.deepcopy(method.state_dict())
    ctx = StepContext(method.configure_optimizers(), FP32)
    for t in range(5):
        ctx.step = t
        out = method.train_step(data.batch, ctx)
        assert all(torch.isfinite(v) for v in out.values())
    after = method.state_dict()
    for net in ("generator", "critic"):
        keys = [k for k in before if k.startswith(f"nets.{net}.")]
        assert any(not torch.equal(before[k], after[k]) for k in keys), net


# ----------------------------------------------------------------------------------------------------------
# Unrolled GAN on the scalar model D(x) = σ(ψx + b), G(z) = θ + z


@pytest.fixture
def float64():
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


class Shift(nn.Module):
    def __init__(self, theta: float) -> None:
        super().__init__()
        self.theta = nn.Parameter(torch.tensor([theta]))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return z + self.theta


class ScalarLogit(nn.Module):
    def __init__(self, psi: float, b: float) -> None:
        super().__init__()
        self.psi, self.b = nn.Parameter(torch.tensor(psi)), nn.Parameter(torch.tensor(b))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.psi * x.reshape(-1) + self.b


N = 8
X_REAL = torch.linspace(0.5, 2.0, N, dtype=torch.float64).reshape(N, 1)


def _scalar_unrolled(k: int, variant: str = "exact", form: str = "minimax"):
    """(method, ctx) with the critic's Adam already stepped a few times, so its state is not trivial."""
    method = UnrolledGAN(
        name="unrolled", batch_size=N, prior={"kind": "normal", "dim": 1}, unroll_steps=k, variant=variant,
        generator_loss=form, generator=Shift(-0.4), critic=ScalarLogit(0.8, 0.1),
        optim={"generator": partial(torch.optim.SGD, lr=0.01),
               "critic": partial(torch.optim.Adam, lr=0.1, betas=(0.5, 0.9))},
    )
    ctx = RecordingContext(method.configure_optimizers(), FP32)
    critic_opt = ctx.optimizers["critic"]
    for g in ([0.3, -0.2], [-0.1, 0.4], [0.2, 0.1]):
        for p, gi in zip(method.critic_module.parameters(), g):
            p.grad = torch.tensor(gi)
        critic_opt.step()
    return method, ctx


def _noise(seed: int = 3) -> torch.Tensor:
    return torch.randn(N, 1, generator=torch.Generator().manual_seed(seed))


def _theta_grad_from_train_step(method, ctx, z):
    """d(generator loss)/dθ as train_step computes it (ctx.optimize leaves .grad after the update)."""
    method.prior = lambda n: z  # the noise train_step draws
    method.train_step(lambda n: X_REAL, ctx)
    return method.nets["generator"].theta.grad.item()


def _surrogate_at(method, ctx, z, theta: float) -> float:
    with torch.no_grad():
        method.nets["generator"].theta.fill_(theta)
    fake = method.generate(z)
    return method.unrolled_generator_loss(X_REAL, fake, ctx.optimizers["critic"]).item()


@pytest.mark.parametrize("form", ["minimax", "non_saturating"])
@pytest.mark.parametrize("k", [1, 3])
def test_unrolled_generator_gradient_matches_finite_differences(float64, k, form):
    method, ctx = _scalar_unrolled(k, form=form)
    z, h = _noise(), 1e-6
    plus, minus = _surrogate_at(method, ctx, z, -0.4 + h), _surrogate_at(method, ctx, z, -0.4 - h)
    with torch.no_grad():
        method.nets["generator"].theta.fill_(-0.4)
    exact = _theta_grad_from_train_step(method, ctx, z)
    assert exact == pytest.approx((plus - minus) / (2 * h), rel=1e-6, abs=1e-9)
    assert ctx.updates == ["generator", "critic"]


@pytest.mark.parametrize("form", ["minimax", "non_saturating"])
def test_unrolled_k0_is_the_plain_gan_generator_gradient(float64, form):
    method, ctx = _scalar_unrolled(0, form=form)
    z = _noise()
    theta = method.nets["generator"].theta
    (plain,) = torch.autograd.grad(gan_generator_loss(method.critic(method.generate(z)), form), theta)
    assert _theta_grad_from_train_step(method, ctx, z) == pytest.approx(plain.item(), rel=1e-12)


@pytest.mark.parametrize("k", [1, 3])
def test_unrolled_exact_differs_from_lookahead(float64, k):
    grads = {}
    for variant in ("exact", "lookahead"):
        method, ctx = _scalar_unrolled(k, variant)
        grads[variant] = _theta_grad_from_train_step(method, ctx, _noise())
    assert abs(grads["exact"] - grads["lookahead"]) > 1e-4  # the second-order term is not zero


def test_unrolled_critic_takes_its_ordinary_step_and_is_untouched_by_the_generator_step(float64):
    method, ctx = _scalar_unrolled(3)
    z = _noise()
    critic = method.critic_module
    theta_d0 = {n: p.detach().clone() for n, p in critic.named_parameters()}
    theta_d1 = method.unrolled_critic(X_REAL, method.generate(z).detach(), ctx.optimizers["critic"], 1,
                                      create_graph=False)
    after_generator_step = {}
    step_generator = ctx.optimize

    def optimize(name, loss):
        step_generator(name, loss)
        if name == "generator":
            after_generator_step.update({n: p.detach().clone() for n, p in critic.named_parameters()})

    ctx.optimize = optimize
    _theta_grad_from_train_step(method, ctx, z)
    for name, p in critic.named_parameters():
        torch.testing.assert_close(after_generator_step[name], theta_d0[name], rtol=0, atol=0)
        torch.testing.assert_close(p.detach(), theta_d1[name], rtol=1e-12, atol=1e-14)
        assert not torch.equal(p.detach(), theta_d0[name])


# ----------------------------------------------------------------------------------------------------------
# Config composition


@pytest.mark.parametrize("overrides", [
    *[(f"method={m}", f"dataset={d}") for m in ("otgan", "unrolled") for d in ("ring8", "grid25", "mnist")],
    ("method=otgan", "dataset=mnist", "model=otgan_mnist"),
    ("method=otgan", "dataset=ring8", "method.loss=cross_entropy"),
    ("method=unrolled", "dataset=ring8", "method.variant=lookahead", "method.unroll_steps=0"),
])
def test_configs_compose_and_instantiate(overrides):
    cfg = _compose(*overrides)
    method = build_method(cfg, torch.device("cpu"))
    assert method.name == cfg.method.name
    z = method.prior(3)
    x = method.generate(z)
    assert tuple(x.shape[1:]) == tuple(cfg.dataset.shape)
    if cfg.method.name == "otgan":
        assert method.prior_kind == "uniform" and z.abs().max() <= 1
        assert method.embed(x).shape == (3, cfg.method.critic_out_dim)
        if cfg.dataset.name == "mnist":
            assert cfg.batch_size == 500  # conf/experiment/tuned/otgan_mnist.yaml
        if cfg.dataset.name == "grid25":
            assert cfg.model.nets.critic.act == "silu"  # conf/experiment/tuned/otgan_grid25.yaml
    else:
        assert method.critic(x).shape == (3,)
