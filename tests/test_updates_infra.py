"""The parts around the methods, each against an oracle computed here (issue 13).

- Samplers (METHODS.md §10 DRS, §11 DOT, MH-GAN of Turner et al. 2019): a fake method whose critic is the
  exact log density ratio of two known 1-D Gaussians; the fake records every latent batch it hands out, so
  the expected output of a sampler is recomputed here from those draws with the papers' formulas (numpy /
  scipy, never the code under test), and the sampler's own uniforms are replayed from its seeded generator.
- Data path: epochs are permutations, the image scaling is the [-1, 1] of the tanh generators, the batch
  stream resumes from a state dict into a fresh dataset.
- Resume: each RNG stream a checkpoint holds (torch CPU, python `random`, the data order) is restored, and
  the resume-equals-uninterrupted check fails when one restore is switched off.
- Trainer order of operations: EMA after the step (closed form of ema.py's decay rules), evaluation leaves
  the training stream untouched, the lr schedule is in force for the step at its milestone.
"""

from __future__ import annotations

import copy
import math
import random

import numpy as np
import pytest
import torch
from scipy import stats
from torch import Tensor, nn

from otgan_lab import checkpoint
from otgan_lab.data.base import DeviceDataset
from otgan_lab.samplers.aeot import AEOTSampler
from otgan_lab.samplers.dot import DOTSampler, dot_target, estimate_k_eff, transport_objective
from otgan_lab.samplers.drs import DRSSampler, drs_score
from otgan_lab.samplers.mh import MHSampler, mh_accept
from otgan_lab.samplers.standard import StandardSampler
from tests.helpers import compose_cfg, tiny_trainer

# ----------------------------------------------------------------------------------------------------------
# A known density ratio: p_g = N(0, 1) (the generator is the identity on a N(0, 1) prior), p_d = N(MU, S²).
# log p_d/p_g = −log S − (x − MU)²/(2S²) + x²/2 is bounded above (S < 1), with its maximum at
# x* = MU/(1 − S²), so rejection sampling and the independence sampler are both exact in the limit.

MU, S = 0.5, 0.8
X_STAR = MU / (1 - S**2)


def true_logit(x: np.ndarray) -> np.ndarray:
    return stats.norm.logpdf(x, MU, S) - stats.norm.logpdf(x, 0.0, 1.0)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


class RecordingMethod(nn.Module):
    """Prior N(0, I_d) from the method's own seeded stream (the sampler's generator is ignored, so that the
    sampler's generator drives only its uniforms); every latent batch handed out is recorded.

    generate(z) = z @ A.T (identity by default); critic = ``critic_fn`` (default: the exact Gaussian logit).
    """

    has_critic = True
    critic_is_logit = True

    def __init__(self, seed: int = 0, dim: int = 1, a: Tensor | None = None, critic_fn=None,
                 prior_kind: str = "normal") -> None:
        super().__init__()
        self.prior_kind, self.dim = prior_kind, dim
        self.stream = gen(seed)
        self.a = a if a is not None else torch.eye(dim, dtype=torch.float64)
        self.critic_fn = critic_fn
        self.drawn: list[Tensor] = []

    def prior(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        if self.prior_kind == "normal":
            z = torch.randn(n, self.dim, dtype=torch.float64, generator=self.stream)
        else:
            z = torch.rand(n, self.dim, dtype=torch.float64, generator=self.stream) * 2 - 1
        self.drawn.append(z.clone())
        return z

    def generate(self, z: Tensor) -> Tensor:
        return z @ self.a.T

    def critic(self, x: Tensor) -> Tensor:
        if self.critic_fn is not None:
            return self.critic_fn(x)
        x = x.reshape(-1)
        return -math.log(S) - (x - MU) ** 2 / (2 * S**2) + x**2 / 2


# ----------------------------------------------------------------------------------------------------------
# DRS (Azadi et al. 2019)


def azadi_accept_prob(logit: np.ndarray, max_logit: float, gamma: float, eps: float) -> np.ndarray:
    """σ(F − γ), F = Δ − log(1 − e^{Δ−ε}), Δ = l − D̃_M; e^{−F} = e^{−Δ} − e^{−ε},
    so σ = 1/(1 + e^γ(e^{−Δ} − e^{−ε}))."""
    delta = logit - max_logit
    return 1.0 / (1.0 + math.exp(gamma) * (np.exp(-delta) - math.exp(-eps)))


def drs_accept_prob(logits: Tensor, max_logit: float, gamma: float, eps: float) -> Tensor:
    """The DRS acceptance rule σ(F − γ) applied to the code's score F (the sampler's own rule is checked
    against the replayed algorithm below)."""
    return torch.sigmoid(drs_score(logits, max_logit, eps) - gamma)


def test_drs_acceptance_probability_is_the_azadi_closed_form():
    logits = np.linspace(-25.0, 2.0, 4001)
    for eps in (1e-6, 1e-3):
        for gamma in (-2.0, 0.0, 1.5):
            got = drs_accept_prob(torch.tensor(logits), 2.0, gamma, eps=eps).numpy()
            want = azadi_accept_prob(logits, 2.0, gamma, eps)
            np.testing.assert_allclose(got, want, rtol=1e-9)
    # on the Gaussian toy at γ = 0, ε → 0 it is the ideal rejection rule p_d/(M p_g) with M = max p_d/p_g
    x = np.linspace(-4, 4, 801)
    ideal = np.exp(true_logit(x) - true_logit(X_STAR))
    got = drs_accept_prob(torch.tensor(true_logit(x)), float(true_logit(X_STAR)), 0.0, eps=1e-12).numpy()
    np.testing.assert_allclose(got, ideal, rtol=1e-6, atol=1e-12)


def drs_replay(draws: list[Tensor], burn_in: int, percentile: float | None, eps: float, n: int,
               seed: int) -> tuple[np.ndarray, list[float]]:
    """DRS from the recorded generator draws: burn-in max, then per batch: raise D̃_M to the batch max,
    γ = batch percentile of F (linear interpolation), accept iff U < σ(F − γ); first n accepted.
    Returns (accepted, D̃_M after the burn-in and after each batch)."""
    uniforms = gen(seed)
    zs = [d.reshape(-1).numpy() for d in draws]
    burned, max_logit, k = 0, -np.inf, 0
    while burned < burn_in:
        max_logit = max(max_logit, true_logit(zs[k]).max())
        burned += len(zs[k])
        k += 1
    assert burned == burn_in
    kept: list[np.ndarray] = []
    trace = [max_logit]
    for z in zs[k:]:
        logit = true_logit(z)
        max_logit = max(max_logit, logit.max())
        trace.append(max_logit)
        delta = logit - max_logit
        f = delta - np.log1p(-np.exp(delta - eps))
        gamma = np.percentile(f, percentile) if percentile is not None else 0.0
        u = torch.rand(len(z), dtype=torch.float64, generator=uniforms).numpy()
        kept.append(z[u < azadi_accept_prob(logit, max_logit, gamma, eps)])
    return np.concatenate(kept)[:n], trace


@pytest.mark.parametrize("percentile", [None, 80.0])
def test_drs_sampler_equals_the_replayed_algorithm(percentile):
    method = RecordingMethod(seed=1)
    sampler = DRSSampler(burn_in=700, percentile=percentile, eps=1e-6, batch_size=300)
    x = sampler.sample(method, 450, generator=gen(2)).reshape(-1).numpy()
    want, trace = drs_replay(method.drawn, 700, percentile, 1e-6, 450, seed=2)
    assert len(x) == 450
    np.testing.assert_array_equal(x, want)
    # D̃_M: the max logit over the burn-in draws, then raised to each sampling batch's max
    np.testing.assert_allclose(sampler.max_logit_trace, trace, rtol=0, atol=1e-12)


def test_drs_accepted_samples_follow_p_data():
    """γ = 0: exact rejection sampling of N(MU, S²) from N(0, 1); acceptance rate 1/M."""
    sampler = DRSSampler(burn_in=20000, percentile=None, batch_size=4000)
    x = sampler.sample(RecordingMethod(seed=3), 20000, generator=gen(4)).reshape(-1).numpy()
    assert stats.kstest(x, stats.norm(MU, S).cdf).pvalue > 1e-3
    assert abs(x.mean() - MU) < 0.02 and abs(x.std() - S) < 0.02  # std of the mean ≈ 0.006
    m = math.exp(true_logit(X_STAR))  # ≈ 1.77
    assert abs(sampler.stats["acceptance_rate"] - 1 / m) < 0.01
    assert abs(sampler.stats["max_logit"] - float(true_logit(X_STAR))) < 0.01


# ----------------------------------------------------------------------------------------------------------
# MH-GAN (Turner et al. 2019): independence sampler, accept x' from x
# w.p. min(1, (D(x)^-1 − 1)/(D(x')^-1 − 1))


def sigmoid(t: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-t))


def turner_accept(logit_current: np.ndarray, logit_proposal: np.ndarray, u: np.ndarray) -> np.ndarray:
    d_cur, d_prop = sigmoid(logit_current), sigmoid(logit_proposal)
    alpha = np.minimum(1.0, (1.0 / d_cur - 1.0) / (1.0 / d_prop - 1.0))
    return u < alpha


def test_mh_acceptance_rule_is_turners_ratio_of_discriminator_odds():
    g = gen(5)
    cur = (torch.rand(20000, dtype=torch.float64, generator=g) * 16 - 8).numpy()
    prop = (torch.rand(20000, dtype=torch.float64, generator=g) * 16 - 8).numpy()
    u = torch.rand(20000, dtype=torch.float64, generator=g).numpy()
    want = turner_accept(cur, prop, u)
    alpha = np.minimum(1.0, np.exp(prop - cur))
    clear = np.abs(u - alpha) > 1e-9  # away from ties, where rounding may decide
    got = mh_accept(torch.tensor(cur), torch.tensor(prop), torch.tensor(u).log()).numpy()
    np.testing.assert_array_equal(got[clear], want[clear])
    assert 0.2 < want.mean() < 0.8  # both outcomes are exercised


def mh_replay(draws: list[Tensor], n: int, chain_length: int, batch_size: int, seed: int) -> np.ndarray:
    uniforms = gen(seed)
    zs = [d.reshape(-1).numpy() for d in draws]
    out, k = [], 0
    for start in range(0, n, batch_size):
        m = min(batch_size, n - start)
        x = zs[k]
        k += 1
        assert len(x) == m
        for _ in range(chain_length):
            x_new = zs[k]
            k += 1
            u = torch.rand(m, dtype=torch.float64, generator=uniforms).numpy()
            x = np.where(turner_accept(true_logit(x), true_logit(x_new), u), x_new, x)
        out.append(x)
    assert k == len(zs)
    return np.concatenate(out)


def test_mh_sampler_equals_the_replayed_chains():
    method = RecordingMethod(seed=6)
    sampler = MHSampler(chain_length=7, batch_size=40)
    x = sampler.sample(method, 100, generator=gen(7)).reshape(-1).numpy()
    np.testing.assert_array_equal(x, mh_replay(method.drawn, 100, 7, 40, seed=7))


def test_mh_chains_reach_p_data():
    """p_g/p_d ≥ 1/M ≈ 0.56: the independence chain forgets its start at rate (1 − 1/M)^k; 60 steps
    suffice."""
    sampler = MHSampler(chain_length=60, batch_size=4000)
    x = sampler.sample(RecordingMethod(seed=8), 4000, generator=gen(9)).reshape(-1).numpy()
    assert stats.kstest(x, stats.norm(MU, S).cdf).pvalue > 1e-3
    assert abs(x.mean() - MU) < 0.04 and abs(x.std() - S) < 0.03
    # stationary acceptance E_{x~p_d, x'~p_g} min(1, r(x')/r(x)), by quadrature on a grid
    grid = np.linspace(-7, 7, 2801)
    w = grid[1] - grid[0]
    r = np.exp(true_logit(grid))
    acc = (stats.norm.pdf(grid, MU, S)[:, None] * stats.norm.pdf(grid)[None, :]
           * np.minimum(1.0, r[None, :] / r[:, None])).sum() * w * w
    assert abs(sampler.stats["acceptance_rate"] - acc) < 0.015


# ----------------------------------------------------------------------------------------------------------
# DOT (Tanaka 2019): minimise H_y(x) = ‖x − y + δ‖₂ − D(x)/K by gradient steps from x = y

W3 = np.array([0.7, -1.3, 0.4])


def sine_critic(x: Tensor) -> Tensor:
    return torch.sin(x.reshape(len(x), -1) @ torch.tensor(W3))


def grad_h(x: np.ndarray, y: np.ndarray, k: float, delta: float) -> np.ndarray:
    """∇_x [‖x − y + δ‖ − sin(w·x)/K] = (x − y + δ)/‖x − y + δ‖ − cos(w·x) w/K, per row."""
    r = x - y + delta
    return r / np.linalg.norm(r, axis=1, keepdims=True) - np.cos(x @ W3)[:, None] * W3[None, :] / k


def test_dot_objective_is_the_plain_w1_norm_minus_critic_over_k():
    g = gen(10)
    x = torch.randn(6, 3, dtype=torch.float64, generator=g)
    y = torch.randn(6, 3, dtype=torch.float64, generator=g)
    h = transport_objective(x, y, sine_critic(x), 1.7, 1e-3).numpy()
    xn, yn = x.numpy(), y.numpy()
    np.testing.assert_allclose(h, np.linalg.norm(xn - yn + 1e-3, axis=1) - np.sin(xn @ W3) / 1.7, rtol=1e-12)


def test_dot_target_sgd_steps_are_closed_form_gradient_steps():
    y = torch.randn(8, 3, dtype=torch.float64, generator=gen(11))
    k, lr, delta = 1.7, 0.05, 1e-3
    yn = y.numpy()
    x1 = yn - lr * grad_h(yn, yn, k, delta)  # at x = y the norm's gradient is δ·1/‖δ·1‖ = 1/√d
    x2 = x1 - lr * grad_h(x1, yn, k, delta)
    for steps, want in ((1, x1), (2, x2)):
        got = dot_target(y, sine_critic, k, steps=steps, lr=lr, delta=delta, optimizer="sgd")
        np.testing.assert_allclose(got.numpy(), want, atol=1e-12)


def test_dot_target_first_adam_step_and_clip():
    """Adam(β1 = 0, β2 = 0.9), first step: m̂ = g, v̂ = g², so x1 = y − lr·g/(|g| + 1e-8); then clamp."""
    y = torch.randn(8, 3, dtype=torch.float64, generator=gen(12)) * 0.6
    k, lr, delta = 1.7, 0.3, 1e-3
    g = grad_h(y.numpy(), y.numpy(), k, delta)
    x1 = np.clip(y.numpy() - lr * g / (np.abs(g) + 1e-8), -0.5, 0.5)
    got = dot_target(y, sine_critic, k, steps=1, lr=lr, delta=delta, clip=(-0.5, 0.5)).numpy()
    np.testing.assert_allclose(got, x1, atol=1e-12)
    assert (np.abs(got) == 0.5).any()  # the clip was exercised


def test_dot_latent_sampler_uniform_prior_steps_and_clip():
    """Latent DOT with G(z) = A z and D(G(z)) = sin(w·Az): ∇_z = (z − z_y + δ)/‖·‖ − cos(w·Az) Aᵀw/k; SGD,
    clamp z to [−1, 1] after every step (uniform prior); the sampler returns G(z_T)."""
    a = np.array([[1.0, 0.5], [-0.3, 1.2], [0.8, -1.0]])  # (3, 2): latent 2-D, data 3-D
    method = RecordingMethod(seed=13, dim=2, a=torch.tensor(a), critic_fn=sine_critic, prior_kind="uniform")
    k, lr, delta, steps = 0.9, 0.4, 1e-3, 3
    sampler = DOTSampler(space="latent", steps=steps, lr=lr, k_eff=k, delta=delta, batch_size=16)
    x = sampler.sample(method, 20, generator=gen(14)).numpy()
    z_y = torch.cat(method.drawn).numpy()
    z = z_y.copy()
    for _ in range(steps):
        r = z - z_y + delta
        aw = a.T @ W3
        g = r / np.linalg.norm(r, axis=1, keepdims=True) - np.cos(z @ aw)[:, None] * aw[None, :] / k
        z = np.clip(z - lr * g, -1.0, 1.0)
    np.testing.assert_allclose(x, z @ a.T, atol=1e-12)
    assert (np.abs(z) == 1.0).any()
    assert sampler.stats["k_eff"] == k


def test_dot_target_sampler_moves_generator_samples():
    method = RecordingMethod(seed=15, dim=3, critic_fn=sine_critic)
    k, lr, delta = 1.3, 0.05, 1e-3
    sampler = DOTSampler(space="target", steps=2, lr=lr, k_eff=k, delta=delta, optimizer="sgd")
    x = sampler.sample(method, 12, generator=gen(16)).numpy()
    y = torch.cat(method.drawn).numpy()
    x1 = y - lr * grad_h(y, y, k, delta)
    np.testing.assert_allclose(x, x1 - lr * grad_h(x1, y, k, delta), atol=1e-12)


def test_k_eff_is_the_largest_critic_slope_over_pairs():
    points = torch.tensor([[0.0, 0.0, 0.0], [1.0, 2.0, 0.5], [-0.5, 0.3, 2.0]], dtype=torch.float64)
    d = sine_critic(points).numpy()
    p = points.numpy()
    slopes = [abs(d[i] - d[j]) / np.linalg.norm(p[i] - p[j]) for i in range(3) for j in range(3) if i < j]
    assert estimate_k_eff(sine_critic, points[:2], n_pairs=3, generator=gen(17)) == pytest.approx(slopes[0],
                                                                                                  rel=1e-12)
    # enough random pairs hit all three: every repeat's max is the largest slope, and so is their mean
    assert estimate_k_eff(sine_critic, points, n_pairs=200, n_repeats=3, generator=gen(18)) == pytest.approx(
        max(slopes), rel=1e-12)


# ----------------------------------------------------------------------------------------------------------
# Standard and AE-OT samplers


def test_standard_sampler_returns_the_generator_of_the_prior_draws():
    a = torch.tensor([[2.0, 0.0], [1.0, -1.0], [0.5, 3.0]], dtype=torch.float64)
    method = RecordingMethod(seed=19, dim=2, a=a)
    x = StandardSampler(batch_size=7).sample(method, 20, generator=gen(20))
    z = torch.cat(method.drawn)
    assert z.shape == (20, 2) and [len(d) for d in method.drawn] == [7, 7, 6]
    assert torch.equal(x, z @ a.T)


class CodeMethod(nn.Module):
    """extended_codes returns a known ramp of codes and records its options; generate(z) = 3z + 1."""

    has_latent_ot = True
    generation = {"angle_threshold": 0.7, "k": 20, "interp": 0.75}

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[dict] = []

    def extended_codes(self, n, *, angle_threshold=None, k=None, interp=None, generator=None):
        self.calls.append({"n": n, "angle_threshold": angle_threshold, "k": k, "interp": interp})
        return torch.arange(2 * n, dtype=torch.float64).reshape(n, 2)

    def generate(self, z: Tensor) -> Tensor:
        return 3 * z + 1


def test_aeot_sampler_decodes_the_extended_codes_with_its_options():
    method = CodeMethod()
    x = AEOTSampler(batch_size=4).sample(method, 10, generator=gen(21))
    assert torch.equal(x, 3 * torch.arange(20, dtype=torch.float64).reshape(10, 2) + 1)
    assert method.calls == [{"n": 10, "angle_threshold": None, "k": None, "interp": None}]  # method defaults
    AEOTSampler(angle_threshold=math.pi, k=5, interp="uniform").sample(method, 3)
    assert method.calls[-1] == {"n": 3, "angle_threshold": math.pi, "k": 5, "interp": "uniform"}


# ----------------------------------------------------------------------------------------------------------
# Data path


def _points(n: int, seed: int = 0) -> DeviceDataset:
    """Points whose value is their index: a batch's values are the indices it drew."""
    return DeviceDataset(name="ramp", data=torch.arange(n, dtype=torch.float32).reshape(n, 1), kind="points",
                         seed=seed)


@pytest.mark.parametrize("n,batch", [(24, 6), (26, 6)])
def test_each_epoch_visits_every_example_once(n, batch):
    """⌊n/b⌋ batches per epoch, no example twice within one; with b | n, each epoch is a permutation; the
    remainder (n mod b examples) is dropped, and every epoch draws a fresh order."""
    data = _points(n, seed=3)
    per_epoch = n // batch
    epochs = [torch.cat([data.batch(batch) for _ in range(per_epoch)]).reshape(-1).long().tolist()
              for _ in range(4)]
    for values in epochs:
        assert len(values) == per_epoch * batch == len(set(values))
        assert set(values) <= set(range(n))
        if n % batch == 0:
            assert sorted(values) == list(range(n))
    assert len({tuple(v) for v in epochs}) == 4  # reshuffled every epoch


def test_image_batches_are_the_tanh_range():
    """uint8 v -> 2v/255 − 1: 0 -> −1, 255 -> +1 exactly, as the tanh generators produce."""
    raw = torch.arange(256, dtype=torch.uint8).reshape(16, 1, 4, 4)
    data = DeviceDataset(name="img", data=raw, kind="image")
    want = raw.double() * 2 / 255 - 1
    batch_idx = data.indices(16)
    data.load_state_dict({**data.state_dict(), "pos": 0})  # replay the same indices through batch()
    x = data.batch(16)
    assert x.dtype == torch.float32
    assert torch.allclose(x.double(), want[batch_idx], atol=1e-6)
    full = data.all()
    assert float(full.min()) == -1.0 and float(full.max()) == 1.0
    assert torch.allclose(full.double(), want, atol=1e-6)


@pytest.mark.parametrize("model", ["mlp", "dcgan", "otgan_mnist", "ae_conv", "ae_mlp"])
def test_image_generators_emit_the_data_range(model):
    from hydra.utils import instantiate

    method = "aeot" if model.startswith("ae") else "gan"
    cfg = compose_cfg("dataset=mnist", f"model={model}", f"method={method}")
    name = "decoder" if "decoder" in cfg.model.nets else "generator"
    net = instantiate(cfg.model.nets[name]).eval()
    torch.manual_seed(0)
    with torch.no_grad():
        out = net(100 * torch.randn(64, cfg.model.z_dim))
    assert out.shape[1:] == tuple(cfg.dataset.shape)
    assert float(out.min()) >= -1.0 and float(out.max()) <= 1.0
    assert float(out.min()) < -0.5 and float(out.max()) > 0.5  # [-1, 1], not a [0, 1] sigmoid


@pytest.mark.parametrize("drawn", [0, 9, 12, 10])  # fresh, mid-epoch, at an epoch's end, remainder pending
def test_data_stream_resumes_into_a_fresh_dataset(drawn):
    data = _points(25, seed=4)
    for _ in range(drawn // 3):
        data.batch(3)
    if drawn % 3:
        data.batch(drawn % 3)
    state = copy.deepcopy(data.state_dict())
    expected = [data.batch(4) for _ in range(20)]  # 80 values: crosses several epoch boundaries
    fresh = _points(25, seed=99)
    fresh.load_state_dict(state)
    for want in expected:
        assert torch.equal(fresh.batch(4), want)


# ----------------------------------------------------------------------------------------------------------
# Resume: every RNG stream of a checkpoint

CFG = ("dataset=ring8", "dataset.n_points=4096", "batch_size=64", "logger=none")


def test_checkpoint_restores_torch_python_and_data_streams(tmp_path):
    trainer = tiny_trainer(compose_cfg("method=gan", *CFG), tmp_path / "a", steps=3)
    trainer.fit()
    random.seed(11)
    torch.manual_seed(12)
    random.random(), torch.rand(2), trainer.data.batch(5)  # leave every stream somewhere non-trivial
    path = checkpoint.save_atomic(trainer.state_dict(), tmp_path / "ckpt.pt")
    want_python = [random.random() for _ in range(3)]
    want_torch = torch.rand(3)
    want_data = trainer.data.batch(64)

    fresh = tiny_trainer(compose_cfg("method=gan", *CFG), tmp_path / "b", steps=3)  # reseeds everything
    random.seed(999)
    torch.manual_seed(999)
    fresh.resume(path)
    assert [random.random() for _ in range(3)] == want_python, "python random not restored"
    assert torch.equal(torch.rand(3), want_torch), "torch CPU RNG not restored"
    assert torch.equal(fresh.data.batch(64), want_data), "data order not restored"


@pytest.mark.parametrize("disabled", [None, "torch_rng", "data_order"])
def test_resume_check_fails_when_one_stream_is_not_restored(disabled, tmp_path, monkeypatch):
    """The control (nothing disabled) resumes bit-exactly; switching off one stream's restore must break it,
    so the resume-equals-uninterrupted check (tests/test_trainer.py) really depends on each stream. (No
    training code draws from python's `random`; its restore is checked directly above.)"""
    cfg = compose_cfg("method=gan", *CFG)
    full = tiny_trainer(cfg, tmp_path / "full", steps=8, checkpoint_every=4, keep_checkpoints=5)
    full.fit()
    resumed = tiny_trainer(cfg, tmp_path / "resumed", steps=8)
    if disabled == "torch_rng":  # restore everything but the torch CPU state, which stays as it is now
        restore = checkpoint.set_rng_state
        monkeypatch.setattr(checkpoint, "set_rng_state",
                            lambda state: restore({**state, "torch": torch.get_rng_state()}))
    elif disabled == "data_order":
        monkeypatch.setattr(DeviceDataset, "load_state_dict", lambda self, state: None)
    resumed.resume(checkpoint.checkpoint_path(tmp_path / "full" / "checkpoints", 4))
    resumed.fit()
    same = all(torch.equal(a, b) for a, b in zip(full.method.state_dict().values(),
                                                  resumed.method.state_dict().values()))
    assert same == (disabled is None)


# tiny settings: AE-OT-GAN solves its OT map at step 2, so the step-3 checkpoint holds the (variable-size) map
RESUME_EXTRA = {
    "wgan_clip": ("method.warmup_schedule=false",),
    "otgan": ("method.sinkhorn_iters=50",),
    "unrolled": ("method.unroll_steps=2",),
    "aeot": ("method.ot.n_codes=64", "method.ot.solver.max_iter=20", "method.ot.solver.n_samples=2000",
             "method.ot.solver.max_samples=4000"),
    "aeot_gan": ("method.ae_steps=2", "method.ot.n_codes=64", "method.ot.solver.max_iter=20",
                 "method.ot.solver.n_samples=2000", "method.ot.solver.max_samples=4000"),
}


@pytest.mark.parametrize("method", ["wgan_clip", "uot", "otgan", "mdgan", "unrolled", "wae_mmd", "wae_gan",
                                    "aeot", "aeot_gan"])
def test_every_other_method_resumes_bit_exactly(method, tmp_path):
    """tests/test_trainer.py resumes gan and wgan_gp; the other methods carry state of their own (OT-GAN's
    step-indexed critic turns, the unrolled critic's mirrored Adam state, AE-OT-GAN's OT map solved inside
    training, the WAE-GAN latent critic): 6 steps == 3 steps, checkpoint, rebuild, resume, 3 steps."""
    cfg = compose_cfg(f"method={method}", "dataset=ring8", "dataset.n_points=2048", "batch_size=32",
                      "logger=none", *RESUME_EXTRA.get(method, ()))
    full = tiny_trainer(cfg, tmp_path / "full", steps=6, checkpoint_every=3, keep_checkpoints=5)
    assert full.fit().status == "completed"
    resumed = tiny_trainer(cfg, tmp_path / "resumed", steps=6)
    resumed.resume(checkpoint.checkpoint_path(tmp_path / "full" / "checkpoints", 3))
    assert resumed.fit().status == "completed"
    a, b = full.method.state_dict(), resumed.method.state_dict()
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), f"{key} differs after resume"


# ----------------------------------------------------------------------------------------------------------
# Trainer order of operations


def _recording(trainer, record):
    original = trainer.method.train_step

    def step(real, ctx):
        out = original(real, ctx)
        record(ctx)
        return out

    trainer.method.train_step = step


@pytest.mark.parametrize("decay,start_step,warmup", [(0.9, 0, False), (0.9, 0, True), (0.8, 2, False),
                                                     (0.95, 1, True)])
def test_ema_is_updated_after_each_step_with_the_closed_form_decay(decay, start_step, warmup, tmp_path):
    """shadow_s = β_s shadow_{s−1} + (1 − β_s) θ_s with θ_s the weights AFTER generator iteration s (s = 1, 2,
    ...), shadow_0 = θ_0, β_s = 0 for s < start_step, else min(β, (1 + t)/(10 + t)) with t = s − start_step
    when warmup, else β (ema.py)."""
    cfg = compose_cfg("method=gan", *CFG, "method.optim.generator.lr=0.05")
    trainer = tiny_trainer(cfg, tmp_path, steps=4,
                           ema={"enabled": True, "decay": decay, "start_step": start_step, "warmup": warmup})
    gen_net = trainer.method.ema_module
    theta = [[p.detach().double().clone() for p in gen_net.parameters()]]
    _recording(trainer, lambda ctx: theta.append([p.detach().double().clone() for p in gen_net.parameters()]))
    trainer.fit()
    assert len(theta) == 5
    shadow = theta[0]
    for s in range(1, 5):
        if s < start_step:
            beta = 0.0
        elif warmup:
            beta = min(decay, (1 + s - start_step) / (10 + s - start_step))
        else:
            beta = decay
        shadow = [beta * e + (1 - beta) * t for e, t in zip(shadow, theta[s])]
        if s == 1 and start_step == 0 and not warmup:  # the brief's closed form: decay·init + (1−decay)·θ_1
            first = [decay * a + (1 - decay) * b for a, b in zip(theta[0], theta[1])]
            assert all(torch.allclose(x, y) for x, y in zip(shadow, first))
    got = [p.double() for p in trainer.ema.shadow.parameters()]
    for g, want in zip(got, shadow):
        assert torch.allclose(g, want, atol=1e-6, rtol=0), float((g - want).abs().max())
    moved = max(float((a - b).abs().max()) for a, b in zip(theta[4], theta[3]))
    assert moved > 1e-3  # the steps are large enough to tell "after" from "before" at atol 1e-6


@pytest.mark.parametrize("sampler", ["standard", "drs"])
def test_evaluation_never_changes_the_training_stream(sampler, tmp_path):
    """eval every step (EMA weights swapped in, BatchNorm generator in eval mode, a sampler drawing from the
    RNG) gives bit-identical weights, optimizer and EMA states, data position and RNG state to no
    evaluation."""
    from otgan_lab import build

    cfg = compose_cfg("method=gan", *CFG, f"sampler={sampler}", "eval.n_samples=128",
                      "metrics.points2d.w2_points=128", "+model.nets.generator.batchnorm=true",
                      *(["sampler.burn_in=256", "sampler.batch_size=128"] if sampler == "drs" else []))
    ends = []
    for every in (0, 1):
        out = tmp_path / f"every{every}"
        trainer = tiny_trainer(cfg, out, steps=4, ema={"enabled": True, "decay": 0.5}, eval_use_ema=True,
                               eval_every=every)
        evaluator = build.build_evaluator(cfg, trainer.data, build.build_sampler(cfg.sampler), out, None)
        done = {}

        def evaluate(m, step, ev=evaluator, done=done):
            done[step] = ev(m, step)  # recorded only when the evaluation completed (the trainer may
            return done[step]  # turn an evaluation error into a logged message)

        trainer.evaluate = evaluate
        trainer.fit()
        assert sorted(done) == ([1, 2, 3, 4] if every else [4])
        assert all(math.isfinite(metrics["w2"]) for metrics in done.values())
        ends.append({
            "method": copy.deepcopy(trainer.method.state_dict()),
            "optim": copy.deepcopy({k: o.state_dict()["state"] for k, o in trainer.optimizers.items()}),
            "ema": copy.deepcopy(trainer.ema.state_dict()),
            "data": copy.deepcopy(trainer.data.state_dict()),
            "rng": torch.get_rng_state().clone(),
        })
    plain, evaluated = ends
    assert any(isinstance(m, nn.BatchNorm1d) for m in trainer.method.ema_module.modules())
    for key, value in plain["method"].items():
        assert torch.equal(value, evaluated["method"][key]), key
    for key, value in plain["ema"].items():
        assert torch.equal(value, evaluated["ema"][key]), key
    for name, states in plain["optim"].items():
        for idx, state in states.items():
            for k, v in state.items():
                other = evaluated["optim"][name][idx][k]
                assert torch.equal(torch.as_tensor(v), torch.as_tensor(other)), (name, k)
    assert plain["data"]["pos"] == evaluated["data"]["pos"]
    assert torch.equal(plain["data"]["perm"], evaluated["data"]["perm"])
    assert torch.equal(plain["data"]["generator"], evaluated["data"]["generator"])
    assert torch.equal(plain["rng"], evaluated["rng"])


def test_lr_schedule_is_in_force_for_the_step_at_its_milestone(tmp_path):
    """milestones [2, 3], gamma 0.1: generator iterations 0, 1 run at the configured rate, iteration 2 at
    0.1×, iteration 3 on at 0.01× (schedule.py: 'from generator iteration m_i on'), set before the step."""
    cfg = compose_cfg("method=gan", *CFG)
    trainer = tiny_trainer(cfg, tmp_path, steps=5, lr_schedule={"milestones": [2, 3], "gamma": 0.1})
    seen = []
    _recording(trainer, lambda ctx: seen.append((ctx.step, {k: o.param_groups[0]["lr"]
                                                            for k, o in ctx.optimizers.items()})))
    trainer.fit()
    assert [s for s, _ in seen] == [0, 1, 2, 3, 4]
    for step, rates in seen:
        factor = 0.1 ** ((step >= 2) + (step >= 3))
        assert rates == pytest.approx({"generator": 2e-4 * factor, "critic": 2e-4 * factor}), step


def test_lr_at_the_milestone_is_the_rate_the_optimizer_steps_with(tmp_path):
    """SGD makes the rate visible in the update: Δθ = −lr·g. The generator's first update after the milestone
    equals −(0.1·lr)·g, with g recomputed here from the weights before the step (critic fixed by then)."""
    cfg = compose_cfg("method=gan", *CFG, "method.optim.generator._target_=torch.optim.SGD",
                      "~method.optim.generator.betas", "method.optim.generator.lr=0.5")
    trainer = tiny_trainer(cfg, tmp_path, steps=2, lr_schedule={"milestones": [1], "gamma": 0.1})
    method = trainer.method
    before = {}
    original = method.train_step

    def step(real, ctx):
        before[ctx.step] = [p.detach().clone() for p in method.nets["generator"].parameters()]
        return original(real, ctx)

    grads = {}
    original_optimize = trainer.ctx.optimize

    def optimize(name, loss):
        if name == "generator":
            params = list(method.nets["generator"].parameters())
            grads[trainer.ctx.step] = [g.detach().clone() for g in torch.autograd.grad(loss, params,
                                                                                        retain_graph=True)]
        original_optimize(name, loss)

    method.train_step = step
    trainer.ctx.optimize = optimize
    trainer.fit()
    after = [p.detach() for p in method.nets["generator"].parameters()]
    for p0, p1, g in zip(before[1], after, grads[1]):
        assert torch.allclose(p1 - p0, -0.05 * g, atol=1e-7, rtol=1e-4)
