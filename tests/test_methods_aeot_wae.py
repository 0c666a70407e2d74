"""AE-OT, AE-OT-GAN and WAE: training steps, the OT map in fit_end, checkpoints, IMQ-MMD, angle threshold.

Oracles: parameters must move and losses stay finite; the IMQ-MMD is checked against an explicit float64
double loop; the mode-mixture test (METHODS.md §9, unit test 5) counts generated codes in the empty gap
between two code clusters, which only interpolation across the singular set can put there.
"""

from __future__ import annotations

import math
import warnings

import pytest
import torch

from otgan_lab import build, checkpoint
from otgan_lab.amp import StepContext, resolve_precision
from otgan_lab.data.base import DeviceDataset
from otgan_lab.data.mixtures import grid25
from otgan_lab.losses.mmd import imq_mmd
from otgan_lab.nets.autoencoder import ConvEncoder, MLPEncoder
from otgan_lab.samplers.aeot import AEOTSampler
from tests.helpers import compose_cfg, tiny_trainer

CPU = torch.device("cpu")
METHODS = ["aeot", "aeot_gan", "wae_mmd", "wae_gan"]
# a small, fast OT problem: the tests check plumbing, not convergence
FAST_OT = ["method.ot.n_codes=64", "method.ot.solver.max_iter=150", "method.ot.solver.n_samples=4096",
           "method.ot.solver.max_samples=4096", "method.ot.solver.lr=1e-3"]


def overrides(method: str, dataset: str, *extra: str) -> list[str]:
    out = [f"method={method}", f"dataset={dataset}", "batch_size=32", *extra]
    if method.startswith("aeot"):
        out += FAST_OT
    if method == "aeot_gan":
        out += ["method.ae_steps=1", "method.ot.n_codes=32"]  # step 0: AE; step 1: OT solve, then GAN steps
    return out


def make_method(method: str, dataset: str, *extra: str, seed: int = 0):
    torch.manual_seed(seed)
    return build.build_method(compose_cfg(*overrides(method, dataset, *extra)), CPU)


def image_data(n: int = 64) -> DeviceDataset:
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 1, 28, 28), generator=gen, dtype=torch.uint8)
    return DeviceDataset("random_images", images, "image")


def step_context(method) -> StepContext:
    return StepContext(method.configure_optimizers(), resolve_precision("fp32", CPU))


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("dataset", ["grid25", "images"])
def test_steps_move_every_optimised_net(method, dataset, capsys):
    data = grid25(n_points=512) if dataset == "grid25" else image_data()
    m = make_method(method, "grid25" if dataset == "grid25" else "mnist")
    ctx = step_context(m)
    before = {k: v.clone() for k, v in m.state_dict().items() if k.startswith("nets.")}
    for step in range(3):
        ctx.step = step
        logs = m.train_step(data.batch, ctx)
        assert logs and all(torch.isfinite(v).all() for v in logs.values()), logs
    after = m.state_dict()
    for name, nets in m.optimizer_nets.items():
        if name in ctx.optimizers:
            for net in nets:
                prefix = f"nets.{net}."
                moved = [not torch.equal(v, after[k]) for k, v in before.items() if k.startswith(prefix)]
                assert any(moved), f"{method}: {net} ({name}) did not change"
    with torch.no_grad():
        x = m.sample(5)
    assert x.shape == (5, *data.shape) and torch.isfinite(x).all()
    if method == "aeot_gan":
        assert m.is_fitted and "generator_loss" in logs and "pairing" in logs


def test_aeot_fit_end_fills_buffers_and_samples(capsys):
    m = make_method("aeot", "grid25")
    with pytest.warns(UserWarning, match="no OT map yet"):
        early = m.sample(4)
    assert early.shape == (4, 2)
    stats = m.fit_end(grid25(n_points=200), step_context(m))
    assert m.ot_codes.shape == (64, 2) and m.ot_heights.shape == (64,)
    assert abs(float(m.ot_heights.mean())) < 1e-5 and m.ot_codes.abs().max() <= 1.0 + 1e-6
    assert stats["ot_n_codes"] == 64 and 0 < stats["ot_coverage"] <= 1
    assert math.isfinite(stats["ot_grad_norm"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # fitted: no warning
        x = m.sample(300)
    assert x.shape == (300, 2) and torch.isfinite(x).all()
    assert "[semi-discrete OT]" in capsys.readouterr().out  # plain progress lines when not in a terminal


def test_seeded_samplers_decode_ot_codes_not_gaussian_noise(capsys):
    """Regression: given a generator, the standard sampler redrew N(0, I) codes instead of the OT map's."""
    from otgan_lab.samplers.base import draw_latents
    from otgan_lab.samplers.reconstruction import ReconstructionSampler
    from otgan_lab.samplers.standard import StandardSampler

    m = make_method("aeot", "grid25")
    data = grid25(n_points=200)
    m.fit_end(data, step_context(m))
    expected = m.extended_codes(500, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(draw_latents(m, 500, torch.Generator().manual_seed(0)), expected)
    x = StandardSampler().sample(m, 500, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(x, m.generate(expected))
    points = data.data.float()
    rec = ReconstructionSampler(batch_size=50)
    rec.fit(m, points)
    with torch.no_grad():
        r = rec.sample(m, 50, generator=torch.Generator().manual_seed(0))
        idx = torch.randint(len(points), (50,), generator=torch.Generator().manual_seed(0))
        assert torch.allclose(r, m.nets["decoder"](m.nets["encoder"](points[idx])))


@pytest.mark.parametrize("method", ["aeot", "aeot_gan"])
def test_checkpoint_round_trip_reproduces_samples(method, tmp_path, capsys):
    cfg = compose_cfg(*overrides(method, "ring8", "dataset.n_points=512"))
    trainer = tiny_trainer(cfg, tmp_path / "a", steps=3)
    outcome = trainer.fit()
    assert outcome.status == "completed" and outcome.checkpoint
    trained = trainer.method
    assert trained.is_fitted
    fresh_cfg = compose_cfg(*overrides(method, "ring8", "dataset.n_points=512", "seed=1"))
    fresh = tiny_trainer(fresh_cfg, tmp_path / "b").method
    assert not fresh.is_fitted
    assert not torch.equal(fresh.nets["decoder"].net[0].weight, trained.nets["decoder"].net[0].weight)
    fresh.load_state_dict(checkpoint.load(outcome.checkpoint, map_location="cpu")["method"])
    assert fresh.ot_codes.shape == trained.ot_codes.shape
    for m in (trained, fresh):
        m.eval()
    samples = []
    for m in (trained, fresh):
        torch.manual_seed(3)
        with torch.no_grad():
            samples.append(m.sample(50))
        seeded = torch.Generator().manual_seed(4)
        samples.append(AEOTSampler(angle_threshold=0.3, k=5).sample(m, 40, generator=seeded))
    assert torch.equal(samples[0], samples[2]) and torch.equal(samples[1], samples[3])


def test_imq_mmd_matches_double_loop_and_separates_shifted_samples():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(5, 3, generator=gen, dtype=torch.float64)
    y = torch.randn(4, 3, generator=gen, dtype=torch.float64)
    scales = (0.5, 1.0, 2.0)

    def k(a, b):
        return sum(s * 6.0 / (s * 6.0 + float(((a - b) ** 2).sum())) for s in scales)  # C = s * 2 * d

    xx = sum(k(x[i], x[j]) for i in range(5) for j in range(5) if i != j) / 20
    yy = sum(k(y[i], y[j]) for i in range(4) for j in range(4) if i != j) / 12
    xy = sum(k(x[i], y[j]) for i in range(5) for j in range(4)) / 20
    assert float(imq_mmd(x, y, scales=scales)) == pytest.approx(xx + yy - 2 * xy, rel=1e-5)

    a = torch.randn(400, 4, generator=gen)
    b = torch.randn(400, 4, generator=gen)
    assert float(imq_mmd(a, a, unbiased=False)) == pytest.approx(0.0, abs=1e-6)
    same, shifted = float(imq_mmd(a, b)), float(imq_mmd(a, b + 1.0))
    assert abs(same) < 0.01 and shifted > 0.1 and shifted > 20 * abs(same)


def test_angle_threshold_removes_mode_mixture(capsys):
    """Codes in two clusters at x = +-0.5 (std 0.05): interpolated codes land in the gap |x| < 0.25 only when
    every pair of planes is kept (threshold pi)."""
    m = make_method("aeot", "grid25", "method.ot.solver.max_iter=300")
    gen = torch.Generator().manual_seed(0)
    codes = 0.05 * torch.randn(100, 2, generator=gen)
    codes[:50, 0] -= 0.5
    codes[50:, 0] += 0.5
    m.fit_ot(codes, progress=False)
    torch.manual_seed(0)
    mixed = m.extended_codes(4096, angle_threshold=math.pi, k=20, interp="uniform")
    kept = m.extended_codes(4096, angle_threshold=0.2, k=20, interp="uniform")
    assert mixed.shape == kept.shape == (4096, 2)
    assert int((mixed[:, 0].abs() < 0.25).sum()) > 0
    assert int((kept[:, 0].abs() < 0.25).sum()) == 0
    # options pass through, decoded
    assert AEOTSampler(angle_threshold=math.pi).sample(m, 64).shape == (64, 2)


@pytest.mark.parametrize("method", METHODS)
def test_config_composes_and_builds_on_points_and_images(method):
    image_z_dim = 8 if method.startswith("wae") else 32  # WAE: the paper's 8-D MNIST code (tuned yaml)
    cases = [("ring8", MLPEncoder, 2), ("grid25", MLPEncoder, 2), ("mnist", ConvEncoder, image_z_dim)]
    for dataset, family, z_dim in cases:
        cfg = compose_cfg(f"method={method}", f"dataset={dataset}")
        assert cfg.model.name == "ae" and cfg.model.z_dim == z_dim == cfg.method.prior.dim
        m = build.build_method(cfg, CPU)
        assert m.name == method and isinstance(m.nets["encoder"], family)
        assert set(m.optimizer_nets) >= set(m.configure_optimizers())
    # an explicit model on the command line wins over the method's choice
    assert compose_cfg(f"method={method}", "dataset=mnist", "model=ae_mlp").model.name == "ae_mlp"
    explicit = build.build_method(compose_cfg(f"method={method}", "dataset=mnist", "model=ae_conv"), CPU)
    assert isinstance(explicit.nets["encoder"], ConvEncoder)
    with pytest.raises(build.ConfigError, match="use model=ae"):  # a GAN model lacks the autoencoder
        build.build_method(compose_cfg(f"method={method}", "model=mlp2d"), CPU)


def test_conv_family_on_points_names_the_model_to_use():
    with pytest.raises(build.ConfigError, match="model=ae_mlp"):
        build.build_method(compose_cfg("method=aeot", "dataset=ring8", "model=ae_conv"), CPU)


def test_aeot_sampler_config_instantiates():
    cfg = compose_cfg("method=aeot", "sampler=aeot", "sampler.angle_threshold=3.14159")
    sampler = build.build_sampler(cfg.sampler)
    assert isinstance(sampler, AEOTSampler) and sampler.angle_threshold == pytest.approx(math.pi, abs=1e-5)
    with pytest.raises(TypeError, match="latent OT map"):
        sampler.sample(build.build_method(compose_cfg("method=wae_mmd"), CPU), 4)
