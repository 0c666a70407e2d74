"""UOTM and MD-GAN: training through the real Trainer, hand-checked losses, config composition."""

from __future__ import annotations

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from torch import nn

from otgan_lab import build
from otgan_lab.amp import Precision, StepContext
from otgan_lab.loggers import JsonlLogger
from otgan_lab.losses.mdgan import mdgan_discriminator_loss, mdgan_generator_loss, sgmm_log_likelihood
from otgan_lab.methods.mdgan import MDGAN
from otgan_lab.methods.uot import UOTM
from otgan_lab.nets.mlp import MLPGenerator
from otgan_lab.paths import conf_dir
from otgan_lab.trainer import Trainer

CPU = torch.device("cpu")
FP32 = Precision("fp32", "cpu")


def compose_cfg(*overrides: str):
    with initialize_config_dir(version_base="1.3", config_dir=str(conf_dir())):
        return compose("config", overrides=list(overrides))


def adam(lr=1e-3):
    return lambda params: torch.optim.Adam(params, lr=lr)


class LinearPotential(nn.Module):
    """v(x) = w·x + b, shape (n,)."""

    def __init__(self, dim: int):
        super().__init__()
        self.linear = nn.Linear(dim, 1)

    def forward(self, x):
        return self.linear(x.flatten(1)).squeeze(1)


class Identity(nn.Module):
    def forward(self, x):
        return x


def make_uot(**kw) -> UOTM:
    args = dict(name="uot", batch_size=32, prior={"kind": "normal", "dim": 2}, optim={"generator": adam(),
                "critic": adam()}, data_shape=[2], generator=MLPGenerator(z_dim=4, hidden=[16]),
                critic=LinearPotential(2))
    args.update(kw)
    return UOTM(**args)


# -- training through the real Trainer ----------------------------------------------------------------
@pytest.mark.parametrize("method", ["uot", "mdgan"])
def test_train_steps_on_ring8(method, tmp_path):
    cfg = compose_cfg(f"method={method}", "dataset=ring8", "dataset.n_points=1024", "batch_size=64")
    build.seed_everything(0)
    data = build.build_dataset(cfg, 0, CPU)
    m = build.build_method(cfg, CPU)
    before = {k: v.clone() for k, v in m.state_dict().items()}
    trainer = Trainer(m, data, FP32, tmp_path, JsonlLogger(tmp_path), steps=3, log_every=1,
                      checkpoint_every=0, ema=OmegaConf.to_container(cfg.trainer.ema), progress=False)
    outcome = trainer.fit()
    assert outcome.status == "completed"
    assert all(torch.isfinite(torch.tensor(v)) for v in outcome.last_scalars.values())
    for net in ("generator", "critic"):
        after = {k: v for k, v in m.state_dict().items() if k.startswith(f"nets.{net}.")}
        changed = [k for k, v in after.items() if not torch.equal(before[k], v)]
        assert changed, f"{method}: {net} did not change"
    if method == "uot":
        assert {"psi1_arg_max", "r1", "transport_cost"} <= set(outcome.last_scalars)
    else:
        assert torch.equal(before["nets.critic.log_lambda"], m.state_dict()["nets.critic.log_lambda"])


# -- UOTM -----------------------------------------------------------------------------------------------
def test_uot_r1_equals_half_gamma_w_squared():
    torch.manual_seed(0)
    m = make_uot(r1_gamma=0.7)
    ctx = StepContext(m.configure_optimizers(), FP32)
    w = m.critic_module.linear.weight.detach().clone()
    logs = m.potential_step(lambda n: torch.randn(n, 2), ctx)
    torch.testing.assert_close(logs["r1"], 0.5 * 0.7 * w.pow(2).sum())


def test_uot_linear_psi_potential_loss_is_otm_form():
    """Ψ* linear: the logged potential loss is E v(T) − E v(y) − E c with c = cost_factor·τ·Σ(T − ε)²."""
    torch.manual_seed(0)
    tau, factor = 0.3, 0.5
    m = make_uot(psi1="linear", psi2="linear", r1_gamma=0.0, tau=tau, cost_factor=factor)
    y = torch.randn(32, 2)
    torch.manual_seed(1)
    with torch.no_grad():
        z = m.prior(32)
        eps, t = z[:, :2], m.generate(z)
        cost = tau * factor * (t - eps).pow(2).sum(1)
        torch.testing.assert_close(m.cost(m.source_of(z), t), cost)
        expected = m.critic(t).mean() - m.critic(y).mean() - cost.mean()
        arg_max = (m.critic(t) - cost).max()
    torch.manual_seed(1)
    logs = m.potential_step(lambda n: y, StepContext(m.configure_optimizers(), FP32))
    torch.testing.assert_close(logs["critic_loss"], expected)
    torch.testing.assert_close(logs["psi1_arg_max"], arg_max)  # the largest Ψ1* argument, detached
    assert not logs["psi1_arg_max"].requires_grad


IMAGE = (1, 28, 28)


@pytest.mark.parametrize(("dataset", "model", "shape"),
                         [("ring8", "mlp2d", (2,)), ("mnist", "mlp", IMAGE), ("mnist", "dcgan", IMAGE)])
def test_uot_prior_and_generate_shapes(dataset, model, shape):
    m = build.build_method(compose_cfg("method=uot", f"dataset={dataset}", f"model={model}"), CPU)
    nz = {"mlp2d": 2, "mlp": 100, "dcgan": 100}[model]
    z = m.prior(5)
    assert z.shape == (5, torch.Size(shape).numel() + nz)
    assert m.source_of(z).shape == (5, *shape)
    assert torch.equal(m.source_of(z).flatten(1), z[:, : torch.Size(shape).numel()])
    m.eval()
    with torch.no_grad():
        x = m.generate(z)
        assert x.shape == (5, *shape) and m.sample(3).shape == (3, *shape)
        assert m.critic(x).shape == (5,)


def test_uot_rejects_unknown_psi_and_uniform_prior():
    with pytest.raises(ValueError, match="psi"):
        make_uot(psi1="kl")
    with pytest.raises(ValueError, match="normal"):
        make_uot(prior={"kind": "uniform", "dim": 2})


# -- MD-GAN ---------------------------------------------------------------------------------------------
def make_mdgan(critic: nn.Module, **kw) -> MDGAN:
    args = dict(name="mdgan", batch_size=16, prior={"kind": "uniform", "dim": 2},
                optim={"generator": adam(), "critic": adam()}, generator=MLPGenerator(z_dim=2, hidden=[16]),
                critic=critic, critic_out_dim=9)
    args.update(kw)
    return MDGAN(**args)


@pytest.mark.parametrize("reference", [False, True])
def test_mdgan_likelihood_never_exceeds_lambda(reference):
    torch.manual_seed(0)
    cfg = compose_cfg("method=mdgan", "dataset=ring8", f"method.reference_simplex={reference}")
    m = build.build_method(cfg, CPU)
    critic = m.critic_module
    means = critic.means.double()
    with torch.no_grad():
        for p in critic.embedding.parameters():  # spread the embeddings over the whole squashed box
            p.mul_(20.0)
        e = torch.cat([critic.embed(torch.randn(4096, 2) * 3) for _ in range(3)]).double()
    # ... and add the points where L peaks: vertices, centroid, and points between them
    centroid = torch.zeros(1, 9, dtype=torch.float64)
    e = torch.cat([e, means, centroid, 0.5 * means, torch.randn(4096, 9, dtype=torch.float64)])
    loglik = sgmm_log_likelihood(e, means, critic.sigma2)
    assert float(loglik.max()) <= float(m.log_lambda) + 1e-9
    assert float(loglik.max()) >= float(m.log_lambda) - 1e-6  # λ is attained (at a vertex or the centroid)


def test_mdgan_critic_logit_sigmoid_is_l_over_lambda():
    torch.manual_seed(0)
    m = build.build_method(compose_cfg("method=mdgan", "dataset=grid25"), CPU)
    with torch.no_grad():
        for p in m.critic_module.embedding.parameters():
            p.mul_(5.0)
        x = torch.randn(256, 2) * 3
        logit, loglik = m.critic(x), m.log_likelihood(x)
    assert logit.shape == (256,) and torch.equal(m.critic_module(x), logit)
    ratio = (loglik.double() - m.log_lambda).exp()
    assert 0 < float(ratio.min()) and float(ratio.max()) < 1
    torch.testing.assert_close(torch.sigmoid(logit.double()), ratio, rtol=1e-4, atol=1e-6)
    assert type(m).capabilities_for({}).logit_critic  # declared by the class, not the instance


class ConstantEmbedding(nn.Module):
    """Embeds every input at the same learnable point (the maximiser of L, so L = λ)."""

    def __init__(self, point):
        super().__init__()
        self.point = nn.Parameter(point.clone().float())

    def forward(self, x):
        return self.point.expand(x.shape[0], -1) + 0.0 * x.sum(1, keepdim=True)


def test_mdgan_losses_finite_when_l_equals_lambda():
    means = make_mdgan(Identity(), squash=False).critic_module.means
    m = make_mdgan(ConstantEmbedding(means[0]), squash=False)
    x = torch.randn(16, 2, requires_grad=True)
    loglik = m.log_likelihood(x)
    torch.testing.assert_close(loglik.double(), m.log_lambda.expand(16), atol=1e-5, rtol=0)
    for loss in (mdgan_discriminator_loss(loglik, loglik, m.log_lambda),
                 mdgan_generator_loss(loglik, m.log_lambda),
                 mdgan_generator_loss(loglik, m.log_lambda, non_saturating=True)):
        grads = torch.autograd.grad(loss, [x, m.critic_module.embedding.point], allow_unused=True,
                                    retain_graph=True)
        assert torch.isfinite(loss) and all(g is None or torch.isfinite(g).all() for g in grads)
    ctx = StepContext(m.configure_optimizers(), FP32)
    logs = m.train_step(lambda n: torch.randn(n, 2), ctx)
    assert all(torch.isfinite(v) for v in logs.values())
    assert torch.isfinite(m.critic(torch.randn(4, 2))).all()


def test_mdgan_wrong_embedding_size_is_a_clear_error():
    m = make_mdgan(nn.Linear(2, 3))
    with pytest.raises(ValueError, match="critic_out_dim"):
        m.critic(torch.randn(4, 2))


# -- configuration --------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["uot", "mdgan"])
@pytest.mark.parametrize("dataset", ["ring8", "grid25", "mnist"])
def test_config_composes_and_instantiates(method, dataset):
    cfg = compose_cfg(f"method={method}", f"dataset={dataset}")
    OmegaConf.to_container(cfg, resolve=True)
    build.check_config(cfg)
    m = build.build_method(cfg, CPU)
    assert m.name == method
    toy = dataset != "mnist"
    if method == "uot":
        assert cfg.trainer.ema.enabled and list(m.data_shape) == list(cfg.dataset.shape)
        assert (m.n_critic, m.cost_factor) == ((5, 0.5) if toy else (1, 1.0))
        if not toy:
            assert 2.5 < m.tau * 784 < 3.5  # τ·d near the official CIFAR-10 value
    else:
        assert cfg.model.nets.critic.out_dim == 9 and m.critic_module.means.shape == (10, 9)
        assert m.prior_kind == ("uniform" if toy else "normal")
        assert cfg.method.optim.critic.lr == (1e-3 if toy else 2e-4)
