"""Update tests for the adversarial methods (issue 13): one `train_step` against the paper's update.

Each test builds a method on tiny networks, supplies every real batch through a recording `real(n)`, records
the prior draws the generator actually received (and the interpolates the critic's penalty saw), runs ONE
`train_step`, and then checks for every network

1. the logged loss values, and
2. the parameter update,

against the update written out here from METHODS.md, independently of the project's loss functions: the
losses are spelled out (softplus as log(1 + e^t), the penalties as explicit input-gradient norms), the
gradients come from plain autograd on deep copies of the initial networks, and the optimizer step is applied
by hand (the method gets plain SGD, so the expected update is p - lr * grad exactly; the two learning rates
differ, so a loss sent to the wrong optimizer shows up). The Dirac-GAN test (Mescheder et al. 2018) needs no
autograd at all: its update is in closed form.

The comment above each test names the source mutations it was seen to catch (each edit made, the test run
and seen to FAIL, the line restored).
"""

from __future__ import annotations

import copy
import math
from functools import partial

import pytest
import torch
from torch import nn

from otgan_lab.amp import Precision, StepContext
from otgan_lab.methods.gan import GAN
from otgan_lab.methods.uot import UOTM
from otgan_lab.methods.wgan_clip import WGANClip
from otgan_lab.methods.wgan_gp import WGANGP

FP32 = Precision("fp32", "cpu")
TOL = dict(rtol=1e-5, atol=1e-6)  # the code computes penalties / costs in float32 even on float64 nets
LR_G, LR_D = 0.07, 0.13  # different, so an update sent to the wrong optimizer cannot match


# -- plumbing ------------------------------------------------------------------------------------------------
class Recorder(nn.Module):
    """Wraps a network and records every input it is called on, and whether that input was a leaf that
    required grad (the input of an input-gradient penalty; a generated batch fed to the critic is not)."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net
        self.inputs: list[torch.Tensor] = []
        self.penalty_input: list[bool] = []

    def forward(self, x):
        self.inputs.append(x.detach().clone())
        self.penalty_input.append(x.requires_grad and x.is_leaf)
        return self.net(x)


class RealBatches:
    """real(n): a fresh, recorded batch on every call, from its own generator (not the global RNG)."""

    def __init__(self, dim: int, seed: int = 7, dtype=None):
        self.gen = torch.Generator().manual_seed(seed)
        self.dim, self.dtype = dim, dtype
        self.sizes: list[int] = []
        self.batches: list[torch.Tensor] = []

    def __call__(self, n: int) -> torch.Tensor:
        dtype = self.dtype or torch.get_default_dtype()
        x = 0.8 * torch.randn(n, self.dim, generator=self.gen, dtype=dtype) + 0.5
        self.sizes.append(n)
        self.batches.append(x.clone())
        return x  # the method may call requires_grad_ on it; the recorded copy stays clean


class Critic(nn.Module):
    """A small nonlinear critic R^d -> R with output shape (n,): its input gradient depends on x, so the
    points where a penalty is taken matter."""

    def __init__(self, dim: int, hidden: int = 8, bias: float = 0.0):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(dim, hidden), nn.Tanh(), nn.Linear(hidden, 1))
        with torch.no_grad():
            self.body[2].bias.add_(bias)

    def forward(self, x):
        return self.body(x).squeeze(1)


def generator_net(z_dim: int, out_dim: int = 2, hidden: int = 8) -> nn.Module:
    return nn.Sequential(nn.Linear(z_dim, hidden), nn.Tanh(), nn.Linear(hidden, out_dim))


def sgd(lr):
    return partial(torch.optim.SGD, lr=lr)


def softplus(t):
    """log(1 + e^t) = BCEWithLogits(t, 0) = -log(1 - sigmoid(t)), written out."""
    return torch.log1p(torch.exp(t))


def sgd_step(net: nn.Module, loss: torch.Tensor, lr: float) -> None:
    """What plain SGD does: p <- p - lr * dloss/dp, for the parameters of `net` only."""
    params = list(net.parameters())
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    with torch.no_grad():
        for p, g in zip(params, grads):
            if g is not None:
                p.sub_(lr * g)


def input_grad(scores: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return torch.autograd.grad(scores.sum(), x, create_graph=True)[0]


def assert_update(actual: nn.Module, expected: nn.Module, initial: nn.Module, what: str) -> None:
    """Parameters equal the hand-computed update, and that update is not vacuous."""
    moved = 0.0
    for (name, a), e, i in zip(actual.named_parameters(), expected.parameters(), initial.parameters()):
        torch.testing.assert_close(a.detach(), e.detach(), **TOL,
                                   msg=lambda m, name=name: f"{what}.{name}: {m}")
        moved = max(moved, (e - i).abs().max().item())
    assert moved > 1e-3, f"{what}: the expected update is too small to test anything"


def assert_log(logs, key, expected) -> None:
    torch.testing.assert_close(logs[key].double(), torch.as_tensor(expected).detach().double(), **TOL,
                               msg=lambda m: f"log {key!r}: {m}")


def assert_prior(draws: list[torch.Tensor], kind: str, n: int, dim: int) -> None:
    """Every generator call got a fresh (n, dim) draw from N(0, I) or U[-1, 1]^dim."""
    for z in draws:
        assert z.shape == (n, dim)
    for a in range(len(draws)):
        for b in range(a + 1, len(draws)):
            assert not torch.equal(draws[a], draws[b]), "the same noise was reused for two generator calls"
    z = torch.cat(draws).flatten()
    if kind == "normal":
        assert 0.85 < z.std().item() < 1.15 and abs(z.mean().item()) < 0.15
        assert (z.abs() > 1).double().mean().item() > 0.2  # N(0,1): 32 % beyond 1; U[-1,1]: none
    else:
        assert z.abs().max().item() <= 1.0 and z.min().item() < -0.9 and z.max().item() > 0.9
        assert 0.5 < z.std().item() < 0.66  # U[-1, 1]: 1/sqrt(3) = 0.577


def context(method) -> StepContext:
    return StepContext(method.configure_optimizers(), FP32)


# -- GAN (METHODS.md §2, §12) --------------------------------------------------------------------------------
# Seen to fail under: real/fake swapped in the critic step, softplus(l) for the real term, the NS form
# replaced by MM and MM by NS, R1 with gamma instead of gamma/2, R1 on the fake logits, input gradient
# without create_graph, the generator loss sent to the critic optimizer, the prior's normal/uniform branches
# swapped, U[0, 1] for U[-1, 1]. Also checks one real batch of n, fresh z for each generator call, and that
# the generator step runs on the updated critic. reuse_fake=True (one generator forward per iteration):
# seen to fail when the generator step draws fresh noise or runs on the critic before its update.
@pytest.mark.parametrize("reuse_fake", [False, True])
@pytest.mark.parametrize(("form", "r1_gamma", "prior"), [
    ("non_saturating", 0.0, "normal"),
    ("minimax", 0.0, "uniform"),
    ("non_saturating", 1.5, "normal"),
    ("minimax", 1.5, "uniform"),
])
def test_gan_one_step_matches_the_paper(float64, form, r1_gamma, prior, reuse_fake):
    n, z_dim = 64, 4
    torch.manual_seed(0)
    G, D = Recorder(generator_net(z_dim)), Critic(2)
    G0, D0 = copy.deepcopy(G.net), copy.deepcopy(D)
    m = GAN(name="gan", batch_size=n, prior={"kind": prior, "dim": z_dim},
            optim={"generator": sgd(LR_G), "critic": sgd(LR_D)}, generator=G, critic=D,
            generator_loss=form, r1_gamma=r1_gamma, reuse_fake=reuse_fake)
    real = RealBatches(2)
    torch.manual_seed(1)
    logs = m.train_step(real, context(m))

    # schedule: one real batch, one detached fake batch for D, fresh noise for G (reuse_fake: the same batch)
    assert real.sizes == [n]
    assert len(G.inputs) == (1 if reuse_fake else 2)
    assert_prior(G.inputs, prior, n, z_dim)
    x, z_d, z_g = real.batches[0], G.inputs[0], G.inputs[-1]

    # expected: critic step  L_D = E softplus(-l(x)) + E softplus(l(G(z)))  [+ (gamma/2) E ||grad_x l(x)||^2]
    G1, D1 = copy.deepcopy(G0), copy.deepcopy(D0)
    with torch.no_grad():
        fake = G1(z_d)
    xr = x.clone().requires_grad_(True)
    l_real, l_fake = D1(xr), D1(fake)
    critic_loss = softplus(-l_real).mean() + softplus(l_fake).mean()
    r1 = 0.5 * r1_gamma * input_grad(l_real, xr).pow(2).sum(1).mean()
    sgd_step(D1, critic_loss + r1, LR_D)
    # the generator step on the updated critic
    l_gen = D1(G1(z_g))
    generator_loss = softplus(-l_gen).mean() if form == "non_saturating" else -softplus(l_gen).mean()
    sgd_step(G1, generator_loss, LR_G)

    assert_log(logs, "critic_loss", critic_loss)
    assert_log(logs, "generator_loss", generator_loss)
    if r1_gamma > 0:
        assert_log(logs, "r1", r1)
    else:
        assert "r1" not in logs
    assert_update(D, D1, D0, "critic")
    assert_update(G.net, G1, G0, "generator")


class DiracCritic(nn.Module):
    """D(x) = theta * x."""

    def __init__(self, theta: float):
        super().__init__()
        self.theta = nn.Parameter(torch.tensor(theta))

    def forward(self, x):
        return self.theta * x[:, 0]


class DiracGenerator(nn.Module):
    """G(z) = psi, whatever z."""

    def __init__(self, psi: float):
        super().__init__()
        self.psi = nn.Parameter(torch.tensor(psi))

    def forward(self, z):
        return self.psi.expand(z.shape[0], 1)


def sigmoid(t: float) -> float:
    return 1.0 / (1.0 + math.exp(-t))


# The Dirac-GAN (Mescheder et al. 2018, METHODS.md §12): gradients in closed form, no autograd in the test.
# Seen to fail under: real/fake swapped, NS/MM swapped either way, R1 gamma vs gamma/2, R1 on fakes, input
# gradient without create_graph, the generator loss sent to the critic optimizer.
@pytest.mark.parametrize(("form", "r1_gamma"), [("non_saturating", 0.0), ("minimax", 0.0),
                                                ("non_saturating", 2.0), ("minimax", 0.7)])
def test_dirac_gan_closed_form(float64, form, r1_gamma):
    theta0, psi0, n = 0.8, -0.6, 16
    m = GAN(name="gan", batch_size=n, prior={"kind": "normal", "dim": 1},
            optim={"generator": sgd(LR_G), "critic": sgd(LR_D)}, generator=DiracGenerator(psi0),
            critic=DiracCritic(theta0), generator_loss=form, r1_gamma=r1_gamma)
    real = RealBatches(1)
    torch.manual_seed(2)
    logs = m.train_step(real, context(m))
    assert real.sizes == [n]
    xs = real.batches[0][:, 0].tolist()

    # D step: L_D = mean softplus(-theta x) + softplus(theta psi) + (gamma/2) theta^2   (grad_x D = theta)
    loss_d = sum(math.log1p(math.exp(-theta0 * x)) for x in xs) / n + math.log1p(math.exp(theta0 * psi0))
    grad_theta = (sum(-x * sigmoid(-theta0 * x) for x in xs) / n + psi0 * sigmoid(theta0 * psi0)
                  + r1_gamma * theta0)
    theta1 = theta0 - LR_D * grad_theta
    # G step on the new critic: NS  L = softplus(-theta psi), dL/dpsi = -theta sigma(-theta psi)
    #                           MM  L = -softplus(theta psi), dL/dpsi = -theta sigma(theta psi)
    if form == "non_saturating":
        loss_g, grad_psi = math.log1p(math.exp(-theta1 * psi0)), -theta1 * sigmoid(-theta1 * psi0)
    else:
        loss_g, grad_psi = -math.log1p(math.exp(theta1 * psi0)), -theta1 * sigmoid(theta1 * psi0)
    psi1 = psi0 - LR_G * grad_psi

    assert_log(logs, "critic_loss", loss_d)
    assert_log(logs, "generator_loss", loss_g)
    if r1_gamma > 0:
        assert_log(logs, "r1", 0.5 * r1_gamma * theta0**2)
    assert m.nets["critic"].theta.item() == pytest.approx(theta1, rel=1e-6, abs=1e-9)
    assert m.nets["generator"].psi.item() == pytest.approx(psi1, rel=1e-6, abs=1e-9)


# -- WGAN with weight clipping (METHODS.md §3) ---------------------------------------------------------------
def wgan_clip_expected(G0, D0, xs, zs, n_critic, clip):
    """Paper Algorithm 1 with the code's documented choice (wgan_clip.py docstring, METHODS.md review notes):
    every critic parameter clamped to [-c, c] right AFTER each critic step."""
    G1, D1 = copy.deepcopy(G0), copy.deepcopy(D0)
    for k in range(n_critic):
        with torch.no_grad():
            fake = G1(zs[k])
        critic_loss = D1(fake).mean() - D1(xs[k]).mean()  # L_C = E f(G(z)) - E f(x)
        sgd_step(D1, critic_loss, LR_D)
        with torch.no_grad():
            for p in D1.parameters():
                p.clamp_(-clip, clip)
    generator_loss = -D1(G1(zs[n_critic])).mean()
    sgd_step(G1, generator_loss, LR_G)
    return G1, D1, critic_loss, generator_loss


# Seen to fail under: clipping never applied, clamp_max at 2c, clamping before each critic step instead of
# after it, n_critic - 1 critic steps, one real batch reused by every critic step, the critic loss's sign
# (real and fake swapped), the generator loss's sign, the critic loss sent to the generator optimizer.
def test_wgan_clip_one_step_matches_the_paper(float64):
    n, z_dim, n_critic, clip = 32, 3, 3, 0.3
    torch.manual_seed(0)
    G, D = Recorder(generator_net(z_dim)), Critic(2)
    with torch.no_grad():  # initial weights partly outside [-c, c]: the first step runs on them unclamped
        for p in D.parameters():
            p.uniform_(-0.5, 0.5)
    G0, D0 = copy.deepcopy(G.net), copy.deepcopy(D)
    m = WGANClip(name="wgan_clip", batch_size=n, prior={"kind": "normal", "dim": z_dim},
                 optim={"generator": sgd(LR_G), "critic": sgd(LR_D)}, generator=G, critic=D,
                 n_critic=n_critic, clip=clip)
    real = RealBatches(2)
    torch.manual_seed(1)
    logs = m.train_step(real, context(m))

    assert real.sizes == [n] * n_critic
    assert len(G.inputs) == n_critic + 1
    assert_prior(G.inputs, "normal", n, z_dim)
    G1, D1, critic_loss, generator_loss = wgan_clip_expected(G0, D0, real.batches, G.inputs, n_critic, clip)

    assert max(p.abs().max().item() for p in D.parameters()) <= clip
    some_clipped = any((p.abs() == clip).any() for p in D1.parameters())
    some_free = any((p.abs() < clip).any() for p in D1.parameters())
    assert some_clipped and some_free  # the test sees both the clamp and the gradient step
    assert_log(logs, "critic_loss", critic_loss)  # the last critic step's loss
    assert_log(logs, "wasserstein_estimate", -critic_loss)
    assert_log(logs, "generator_loss", generator_loss)
    assert_update(D, D1, D0, "critic")
    assert_update(G.net, G1, G0, "generator")


# Official schedule (METHODS.md §3): 100 critic steps while gen_iterations < 25 and whenever
# gen_iterations % 500 == 0, else n_critic; ctx.step is the number of finished generator iterations.
# Seen to fail under: `< 25` -> `<= 25`, `< 25` -> `< 24`, `% 500 == 0` -> `== 1`, n_critic - 1 steps, one
# real batch reused.
@pytest.mark.parametrize(("step", "warmup", "expected"), [
    (0, True, 100), (24, True, 100), (25, True, 4), (499, True, 4), (500, True, 100), (501, True, 4),
    (1000, True, 100), (0, False, 4), (500, False, 4),
])
def test_wgan_clip_warmup_schedule_critic_steps(float64, step, warmup, expected):
    n, z_dim = 4, 2
    torch.manual_seed(0)
    G = Recorder(generator_net(z_dim, hidden=4))
    m = WGANClip(name="wgan_clip", batch_size=n, prior={"kind": "normal", "dim": z_dim},
                 optim={"generator": sgd(LR_G), "critic": sgd(LR_D)}, generator=G, critic=Critic(2, 4),
                 n_critic=4, clip=0.01, warmup_schedule=warmup)
    real = RealBatches(2)
    ctx = context(m)
    ctx.step = step
    m.train_step(real, ctx)
    assert real.sizes == [n] * expected
    assert len(G.inputs) == expected + 1


# -- WGAN-GP (METHODS.md §4) ---------------------------------------------------------------------------------
# Seen to fail under: one critic step instead of n_critic, penalty centre 0 instead of 1, lambda dropped,
# lambda on the Wasserstein term instead, one epsilon for the whole batch, one epsilon per coordinate, the
# penalty at the real points only, input gradient without create_graph, the critic loss's sign, the
# generator loss's sign, the generator loss sent to the critic optimizer, the prior's branches swapped.
# reuse_fake=True: the generator step on the last critic step's noise, through the updated critic.
@pytest.mark.parametrize("reuse_fake", [False, True])
def test_wgan_gp_one_step_matches_the_paper(reuse_fake):
    n, z_dim, n_critic, lam = 32, 3, 3, 3.0
    torch.manual_seed(0)
    G, D = Recorder(generator_net(z_dim)), Recorder(Critic(2))
    with torch.no_grad():  # a critic far from 1-Lipschitz: the penalty's gradient is large
        for p in D.net.body[0].parameters():
            p.mul_(4.0)
    G0, D0 = copy.deepcopy(G.net), copy.deepcopy(D.net)
    m = WGANGP(name="wgan_gp", batch_size=n, prior={"kind": "normal", "dim": z_dim},
               optim={"generator": sgd(LR_G), "critic": sgd(LR_D)}, generator=G, critic=D,
               n_critic=n_critic, gp_weight=lam, reuse_fake=reuse_fake)
    real = RealBatches(2, dtype=torch.float32)
    torch.manual_seed(1)
    logs = m.train_step(real, context(m))

    assert real.sizes == [n] * n_critic
    assert len(G.inputs) == n_critic + (0 if reuse_fake else 1)
    assert_prior(G.inputs, "normal", n, z_dim)
    # the penalty's inputs: the leaf critic inputs that require grad, one batch of n per critic step
    x_hats = [x for x, leaf in zip(D.inputs, D.penalty_input) if leaf]
    assert len(x_hats) == n_critic and all(x.shape == (n, 2) for x in x_hats)

    G1, D1 = copy.deepcopy(G0), copy.deepcopy(D0)
    epsilons = []
    for k in range(n_critic):
        x = real.batches[k]
        with torch.no_grad():
            fake = G1(G.inputs[k])
        # x_hat = eps * x + (1 - eps) * fake with one eps ~ U[0, 1] per sample, shared by the coordinates
        d, t = x - fake, x_hats[k] - fake
        eps = (t * d).sum(1) / (d * d).sum(1)
        torch.testing.assert_close(x_hats[k], eps[:, None] * x + (1 - eps[:, None]) * fake,
                                   rtol=1e-5, atol=1e-5)
        assert eps.min().item() >= -1e-6 and eps.max().item() <= 1 + 1e-6
        epsilons.append(eps)
        x_hat = x_hats[k].clone().requires_grad_(True)
        wasserstein = D1(fake).mean() - D1(x).mean()
        gp = ((input_grad(D1(x_hat), x_hat).pow(2).sum(1).sqrt() - 1) ** 2).mean()
        sgd_step(D1, wasserstein + lam * gp, LR_D)
    generator_loss = -D1(G1(G.inputs[-1])).mean()
    sgd_step(G1, generator_loss, LR_G)

    eps = torch.cat(epsilons)  # per sample and fresh each step: spread over [0, 1]
    assert eps.std().item() > 0.15 and eps.min().item() < 0.2 and eps.max().item() > 0.8
    assert_log(logs, "critic_loss", wasserstein)
    assert_log(logs, "wasserstein_estimate", -wasserstein)
    assert_log(logs, "gradient_penalty", gp)
    assert_log(logs, "generator_loss", generator_loss)
    assert_update(D.net, D1, D0, "critic")
    assert_update(G.net, G1, G0, "generator")


# -- UOTM (METHODS.md §5, §12) -------------------------------------------------------------------------------
PSI_STAR = {  # METHODS.md §5 select_phi and the follow-up shifted forms, written out
    "softplus": lambda t: torch.log1p(torch.exp(t)),
    "exp": lambda t: torch.exp(t),
    "softplus_shifted": lambda t: 2 * torch.log1p(torch.exp(t)) - 2 * math.log(2),
    "exp_shifted": lambda t: torch.exp(t) - 1,
    "chi": lambda t: (lambda y: 0.25 * y**2 + y)(torch.clamp(t, min=-2.0)),
    "linear": lambda t: t,
}


# Seen to fail under: tau dropped from the cost, cost_factor ignored, 1/2 on the cost in the map step only,
# Psi1*/Psi2* swapped, Psi2*(+v) for Psi2*(-v), exp - 1 for exp, the chi conjugate's floor removed, R1 with
# gamma instead of gamma/2, input gradient without create_graph, one potential step instead of n_critic,
# v's sign in the map loss, the source taken from the last prior coordinates, a uniform source, the potential
# loss sent to the generator optimizer.
@pytest.mark.parametrize(("psi1", "psi2", "cost_factor", "v_bias", "r1_gamma", "n_critic"), [
    ("softplus", "softplus", 1.0, 0.0, 0.8, 1),
    ("exp", "softplus_shifted", 1.0, 0.0, 0.8, 3),
    ("exp_shifted", "chi", 0.5, 2.2, 1.3, 2),  # v(y) ~ 2.2: Psi2*'s argument crosses chi's floor at -2
    ("linear", "exp", 1.0, 0.0, 0.0, 2),
])
def test_uot_one_step_matches_the_paper(float64, psi1, psi2, cost_factor, v_bias, r1_gamma, n_critic):
    n, nz, tau, d = 32, 1, 0.3, 2
    torch.manual_seed(0)
    G, V = Recorder(generator_net(d + nz)), Critic(d, bias=v_bias)
    G0, V0 = copy.deepcopy(G.net), copy.deepcopy(V)
    m = UOTM(name="uot", batch_size=n, prior={"kind": "normal", "dim": nz},
             optim={"generator": sgd(LR_G), "critic": sgd(LR_D)}, generator=G, critic=V, data_shape=[d],
             tau=tau, cost_factor=cost_factor, psi1=psi1, psi2=psi2, r1_gamma=r1_gamma, n_critic=n_critic)
    real = RealBatches(d)
    torch.manual_seed(1)
    logs = m.train_step(real, context(m))

    assert real.sizes == [n] * n_critic
    assert len(G.inputs) == n_critic + 1
    assert_prior(G.inputs, "normal", n, d + nz)  # source eps in data space, then the auxiliary z: N(0, I)

    def cost(src, target):  # c(eps, T) = cost_factor * tau * sum (T - eps)^2, per sample
        return cost_factor * tau * (target - src).pow(2).sum(1)

    G1, V1 = copy.deepcopy(G0), copy.deepcopy(V0)
    psi_1, psi_2 = PSI_STAR[psi1], PSI_STAR[psi2]
    for k in range(n_critic):
        inp = G.inputs[k]
        with torch.no_grad():
            T = G1(inp)
            c = cost(inp[:, :d], T)
        y = real.batches[k].clone().requires_grad_(True)
        v_real = V1(y)
        arg1 = V1(T) - c
        potential_loss = psi_2(-v_real).mean() + psi_1(arg1).mean()
        r1 = 0.5 * r1_gamma * input_grad(v_real, y).pow(2).sum(1).mean()
        last = dict(critic_loss=potential_loss, r1=r1, psi1_arg_max=arg1.max(), v_real=v_real.mean())
        sgd_step(V1, potential_loss + r1, LR_D)
    inp = G.inputs[n_critic]
    T = G1(inp)
    c = cost(inp[:, :d], T)
    generator_loss = (c - V1(T)).mean()  # L_T = E[c(eps, T) - v(T)], v frozen
    sgd_step(G1, generator_loss, LR_G)

    if psi2 == "chi":
        assert (-V0(real.batches[0]) < -2).any() and (-V0(real.batches[0]) > -2).any()
    for key in ("critic_loss", "psi1_arg_max", "v_real"):
        assert_log(logs, key, last[key])
    if r1_gamma > 0:
        assert_log(logs, "r1", last["r1"])
    else:
        assert "r1" not in logs
    assert_log(logs, "generator_loss", generator_loss)
    assert_log(logs, "transport_cost", c.mean())
    assert_update(V, V1, V0, "critic")
    assert_update(G.net, G1, G0, "generator")
