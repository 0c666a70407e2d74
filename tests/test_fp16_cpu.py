"""The fp16 path (float16 autocast + one GradScaler per optimizer) run on the CPU, so that the CUDA path is
not first run by a user: the scalers, the AMP gradient-penalty recipe, skipped steps on overflow, scaler
state through checkpoint/resume, and every method for one step against its fp32 twin.

Users on a CPU are refused fp16; the tests reach it through `resolve_precision(..., allow_cpu_fp16=True)`.
GradScaler's default first scale (2**16) overflows the first steps of these nets (those steps are skipped
by design), so tests that compare against fp32 start at a small scale through `Precision.init_scale`.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from otgan_lab import build, checkpoint
from otgan_lab.amp import Precision, PrecisionError, StepContext, resolve_precision
from otgan_lab.errors import ConfigError
from otgan_lab.losses.penalties import gradient_penalty
from tests.helpers import compose_cfg, options

CPU = torch.device("cpu")
FP32 = Precision("fp32", "cpu")
CFG = ("dataset=ring8", "dataset.n_points=1024", "batch_size=32")


def fp16(init_scale: float = 2.0**16) -> Precision:
    return dataclasses.replace(resolve_precision("fp16", CPU, allow_cpu_fp16=True), init_scale=init_scale)


def build_trainer(cfg, out_dir, precision: Precision, steps: int = 1, **kw):
    """tests.helpers.tiny_trainer with the precision given, not read from cfg.precision."""
    from otgan_lab.loggers import JsonlLogger
    from otgan_lab.trainer import Trainer

    build.seed_everything(cfg.seed)
    data = build.build_dataset(cfg, cfg.seed, CPU)
    method = build.build_method(cfg, CPU)
    trainer_kw = dict(steps=steps, log_every=1, checkpoint_every=0, config={}, progress=False)
    trainer_kw.update(kw)
    return Trainer(method, data, precision, out_dir, JsonlLogger(out_dir), **trainer_kw)


def sgd_pair(lr: float = 1.0):
    """Two one-layer networks with their own SGD optimizers (seeded)."""
    torch.manual_seed(0)
    a, b = nn.Linear(3, 1, bias=False), nn.Linear(3, 1, bias=False)
    return a, b, {"a": torch.optim.SGD(a.parameters(), lr=lr), "b": torch.optim.SGD(b.parameters(), lr=lr)}


def inf_grad_once(param: nn.Parameter) -> None:
    """Make the next gradient that reaches `param` infinite: an fp16 overflow, injected."""
    armed = [True]

    def hook(grad):
        if armed[0]:
            armed[0] = False
            return torch.full_like(grad, float("inf"))
        return grad

    param.register_hook(hook)


# -- the switch -------------------------------------------------------------------------------------------
def test_users_on_cpu_are_refused_fp16_and_code_can_switch_it_on():
    with pytest.raises(PrecisionError, match="needs a CUDA device"):
        resolve_precision("fp16", "cpu")
    with pytest.raises(ConfigError, match="precision=fp16 .* needs a CUDA device"):
        build.check_config(compose_cfg("precision=fp16", "device=cpu"))
    with pytest.raises(PrecisionError, match="needs a CUDA device"):  # the switch is for CPUs only
        resolve_precision("fp16", "mps", allow_cpu_fp16=True)
    precision = resolve_precision("fp16", "cpu", allow_cpu_fp16=True)
    assert precision == Precision("fp16", "cpu") and precision.uses_scaler
    assert precision.init_scale == torch.amp.GradScaler("cpu").get_scale()  # GradScaler's own default
    with precision.autocast():
        assert nn.Linear(2, 2)(torch.ones(1, 2)).dtype == torch.float16


def test_one_cpu_grad_scaler_per_optimizer_each_with_its_own_scale():
    a, b, opts = sgd_pair()
    ctx = StepContext(opts, fp16(2.0**10))
    assert ctx.scalers.keys() == opts.keys() and ctx.scalers["a"] is not ctx.scalers["b"]
    # a "cuda" scaler would disable itself on a CPU-only host (no scaling, an empty state_dict)
    assert all(s.is_enabled() and s._device == "cpu" for s in ctx.scalers.values())
    x = torch.randn(8, 3)
    inf_grad_once(a.weight)  # only network a overflows
    a_before, b_before = a.weight.detach().clone(), b.weight.detach().clone()
    with ctx.autocast():
        ctx.optimize("a", a(x).float().pow(2).mean())
        ctx.optimize("b", b(x).float().pow(2).mean())
    assert ctx.scalers["a"].get_scale() == 2.0**9 and ctx.scalers["b"].get_scale() == 2.0**10
    assert torch.equal(a.weight, a_before) and not torch.equal(b.weight, b_before)
    assert ctx.state_dict()["a"]["scale"] == 2.0**9 and ctx.state_dict()["b"]["_growth_tracker"] == 1


# -- the AMP gradient-penalty recipe ----------------------------------------------------------------------
@pytest.mark.parametrize("weight, init_scale", [(1.0, 2.0**12), (1e-7, 2.0**16)])
def test_input_grad_under_fp16_is_the_true_gradient_of_a_linear_critic(weight, init_scale):
    """critic(x) = weight * (x @ w): d critic / dx = weight * w in closed form (w as fp16 rounds it). The loss
    scale must be divided out of the scaled gradient; and a gradient as small as 1e-7 * w, which float16 holds
    only as a few subnormal bits, must come out whole because it was differentiated scaled."""
    torch.manual_seed(0)
    critic = nn.Linear(3, 1, bias=False)
    ctx = StepContext({"critic": torch.optim.SGD(critic.parameters(), lr=0.1)}, fp16(init_scale))
    x = torch.randn(16, 3, requires_grad=True)
    with ctx.autocast():
        scores = critic(x).squeeze(1)
        assert scores.dtype == torch.float16
        grad = ctx.input_grad(weight * scores.float(), x, "critic")
    expected = weight * critic.weight.detach().half().float().expand(16, 3)
    torch.testing.assert_close(grad, expected, rtol=2e-3, atol=0)
    torch.testing.assert_close(gradient_penalty(grad), gradient_penalty(weight * critic.weight.detach()),
                               rtol=2e-3, atol=0)


def test_the_penalty_recipe_under_fp16_matches_fp32_in_value_and_in_the_update():
    """A WGAN-GP-style penalty through a nonlinear critic: the input gradient, the penalty and the critic
    update it causes (the double backward through the scaled graph) all match fp32 within fp16 accuracy."""

    def run(precision):
        torch.manual_seed(0)
        critic = nn.Sequential(nn.Linear(2, 32), nn.Tanh(), nn.Linear(32, 1))
        ctx = StepContext({"critic": torch.optim.SGD(critic.parameters(), lr=1.0)}, precision)
        x = torch.randn(64, 2, requires_grad=True)
        before = [p.detach().clone() for p in critic.parameters()]
        with ctx.autocast():
            grad = ctx.input_grad(critic(x).squeeze(1), x, "critic")
            penalty = gradient_penalty(grad)
            ctx.optimize("critic", penalty)
        update = torch.cat([(q - p).flatten() for p, q in zip(before, critic.parameters())])
        return grad.detach(), penalty.detach(), update, ctx

    grad32, penalty32, update32, _ = run(FP32)
    grad16, penalty16, update16, ctx = run(fp16(2.0**12))
    assert ctx.scalers["critic"].get_scale() == 2.0**12  # the step ran, nothing was skipped
    assert grad32.abs().mean() > 0.05 and update32.abs().max() > 1e-3  # not a vacuous comparison
    torch.testing.assert_close(grad16, grad32, rtol=1e-2, atol=2e-3)
    torch.testing.assert_close(penalty16, penalty32, rtol=1e-2, atol=1e-4)
    torch.testing.assert_close(update16, update32, rtol=2e-2, atol=2e-3)


# -- skipped steps on overflow ----------------------------------------------------------------------------
@pytest.mark.parametrize("overflow", ["inf_gradient", "inf_loss"])
def test_an_overflowing_step_is_skipped_the_scale_backs_off_and_the_next_step_updates(overflow):
    torch.manual_seed(0)
    net = nn.Linear(3, 1)
    ctx = StepContext({"net": torch.optim.Adam(net.parameters(), lr=0.1)}, fp16(2.0**10))
    scaler, opt, x = ctx.scalers["net"], ctx.optimizers["net"], torch.randn(8, 3)

    def step(poison_loss: bool = False) -> list[torch.Tensor]:
        before = [p.detach().clone() for p in net.parameters()]
        with ctx.autocast():
            loss = net(x).float().pow(2).mean()
            ctx.optimize("net", loss * float("inf") if poison_loss else loss)
        return before

    step(), step()
    assert scaler.state_dict()["_growth_tracker"] == 2 and opt.state[net.weight]["step"] == 2
    if overflow == "inf_gradient":
        inf_grad_once(net.weight)
    before = step(poison_loss=overflow == "inf_loss")
    assert all(torch.equal(p, q) for p, q in zip(net.parameters(), before)), "the overflowing step updated"
    assert opt.state[net.weight]["step"] == 2  # Adam's step count and moments untouched too
    assert scaler.get_scale() == 2.0**10 * scaler.get_backoff_factor() == 2.0**9
    assert scaler.state_dict()["_growth_tracker"] == 0
    assert all(p.grad is not None and not torch.isfinite(p.grad).all() for p in net.parameters()) or (
        overflow == "inf_gradient")  # an inf loss poisons every gradient, the hook only the weight's
    before = step()
    assert all(not torch.equal(p, q) for p, q in zip(net.parameters(), before)), "no update after the skip"
    assert scaler.get_scale() == 2.0**9 and opt.state[net.weight]["step"] == 3


def test_grad_clipping_under_fp16_clips_the_unscaled_gradient():
    """clip_grad_norm_ must see true gradients (unscale_ first), else it clips scale-times-too-large ones."""

    def update(precision):
        torch.manual_seed(0)
        net = nn.Linear(4, 1, bias=False)
        ctx = StepContext({"net": torch.optim.SGD(net.parameters(), lr=1.0)}, precision, grad_clip=0.5)
        before = net.weight.detach().clone()
        with ctx.autocast():
            ctx.optimize("net", 10.0 * net(torch.randn(16, 4)).float().mean())
        return net.weight.detach() - before

    update32, update16 = update(FP32), update(fp16(2.0**8))
    assert update32.norm() == pytest.approx(0.5, rel=1e-4)  # the true gradient was longer than 0.5
    torch.testing.assert_close(update16, update32, rtol=1e-2, atol=1e-3)


@pytest.mark.parametrize("name", ["fp16", "bf16"])
def test_a_forward_after_an_update_in_the_same_autocast_region_sees_the_new_weights(name):
    """The trainer wraps a whole train_step (n_critic critic updates, then the generator's pass through the
    critic) in one autocast region, and autocast caches low-precision weight copies until the region ends."""
    torch.manual_seed(0)
    net = nn.Linear(3, 1)
    precision = fp16(2.0**10) if name == "fp16" else resolve_precision("bf16", CPU)
    ctx = StepContext({"net": torch.optim.SGD(net.parameters(), lr=0.5)}, precision)
    x = torch.randn(8, 3)
    with ctx.autocast():
        ctx.optimize("net", net(x).float().pow(2).mean())
        after_update = net(x).float()
    with precision.autocast():  # a fresh region: no cache
        fresh = net(x).float()
    torch.testing.assert_close(after_update, fresh, rtol=0, atol=0)


def _moved_between(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor]) -> set[str]:
    """Names of the networks (method.nets.<name>) whose state differs between two state dicts."""
    return {k.split(".")[1] for k in before if k.startswith("nets.") and not torch.equal(before[k], after[k])}


def test_the_trainer_skips_an_overflowing_step_and_goes_on(tmp_path):
    """A step the scaler skips is no divergence when the losses are finite: the run completes, the skipped
    network stays put that step, only its scale backs off, and the next step updates it."""
    cfg = compose_cfg("method=gan", *CFG)
    trainer = build_trainer(cfg, tmp_path, fp16(2.0**10), steps=3)
    method, snapshots = trainer.method, []
    original = method.train_step

    def train_step(real, ctx):
        if ctx.step == 1:
            inf_grad_once(method.critic_module.head.weight)
        snapshots.append({k: v.clone() for k, v in method.state_dict().items()})
        return original(real, ctx)

    method.train_step = train_step
    outcome = trainer.fit()
    assert outcome.status == "completed" and outcome.step == 3
    snapshots.append(method.state_dict())
    moved = [_moved_between(a, b) for a, b in zip(snapshots, snapshots[1:])]
    assert moved == [{"critic", "generator"}, {"generator"}, {"critic", "generator"}]
    assert trainer.ctx.scalers["critic"].get_scale() == 2.0**9
    assert trainer.ctx.scalers["generator"].get_scale() == 2.0**10


def test_a_skipped_step_with_a_penalty_is_not_a_divergence(tmp_path):
    """gan with R1 at a first loss scale whose input gradient overflows in fp16 (the CUDA default 2**16 does
    so for these nets too): the scaler skips that critic step by design, so the run must go on."""
    cfg = compose_cfg("method=gan", "method.r1_gamma=1.0", *CFG)
    trainer = build_trainer(cfg, tmp_path, fp16(2.0**24), steps=3)
    outcome = trainer.fit()
    assert outcome.status == "completed", (outcome.status, outcome.last_scalars)
    assert trainer.ctx.scalers["critic"].get_scale() < 2.0**24  # the critic's scaler did skip and back off


def test_a_loss_that_stays_non_finite_under_fp16_is_still_a_divergence(tmp_path, monkeypatch):
    """Every step skipped by the scaler (the loss itself is NaN): after MAX_SKIPPED in a row, diverged."""
    from otgan_lab.trainer import MAX_SKIPPED

    cfg = compose_cfg("method=gan", *CFG)
    trainer = build_trainer(cfg, tmp_path, fp16(2.0**10), steps=MAX_SKIPPED + 10)

    def poisoned(self, real, ctx):
        loss = next(self.nets["critic"].parameters()).sum() * float("nan")
        ctx.optimize("critic", loss)
        return {"critic_loss": loss.detach()}

    monkeypatch.setattr(type(trainer.method), "train_step", poisoned)
    outcome = trainer.fit()
    assert outcome.status == "diverged" and outcome.step == MAX_SKIPPED + 1


# -- scaler state through checkpoint / resume -------------------------------------------------------------
def test_scaler_state_survives_checkpoint_and_resume_bit_exactly(tmp_path):
    """wgan_gp at GradScaler's default first scale: its first steps overflow, so by the checkpoint each scaler
    holds its own backed-off scale and growth count; a resumed run must carry on from them exactly."""
    cfg = compose_cfg("method=wgan_gp", *CFG)
    full = build_trainer(cfg, tmp_path / "full", fp16(), steps=8, checkpoint_every=4, keep_checkpoints=5)
    assert full.fit().status == "completed"
    mid = checkpoint.checkpoint_path(tmp_path / "full" / "checkpoints", 4)
    saved = checkpoint.load(mid)["scalers"]
    assert saved.keys() == {"generator", "critic"}
    assert saved["critic"]["scale"] < 2.0**16 and saved["critic"]["scale"] != saved["generator"]["scale"]
    assert all(s["_growth_tracker"] > 0 for s in saved.values())

    resumed = build_trainer(cfg, tmp_path / "resumed", fp16(), steps=8)
    resumed.resume(mid)
    assert resumed.ctx.state_dict() == saved
    assert resumed.fit().status == "completed"
    assert resumed.ctx.state_dict() == full.ctx.state_dict()
    a, b = full.method.state_dict(), resumed.method.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a), "resumed fp16 run differs from the uninterrupted one"


# -- every method, one step -------------------------------------------------------------------------------
TINY_OT = ("method.ot.n_codes=64", "method.ot.solver.max_iter=30", "method.ot.solver.n_samples=2048")
VARIANTS = {name: (f"method={name}",) for name in options("method")}
VARIANTS["gan_r1"] = ("method=gan", "method.r1_gamma=1.0")  # the penalty recipe in a method
VARIANTS["wgan_gp_1_critic_step"] = ("method=wgan_gp", "method.n_critic=1")
VARIANTS["aeot_gan_gan_phase_r1"] = ("method=aeot_gan", "method.ae_steps=0", "method.r1_gamma=1.0", *TINY_OT)


def _one_step(cfg, tmp_path, precision):
    trainer = build_trainer(cfg, tmp_path, precision)
    method = trainer.method
    before = {k: v.clone() for k, v in method.state_dict().items()}
    dtypes = set()
    hooks = [m.register_forward_hook(lambda m, a, out: dtypes.add(getattr(out, "dtype", None)))
             for m in method.modules()]
    with trainer.ctx.autocast():
        out = method.train_step(trainer.data.batch, trainer.ctx)
    for hook in hooks:
        hook.remove()
    losses = {k: v.detach().float() for k, v in out.items()}
    return trainer, losses, _moved_between(before, method.state_dict()), dtypes


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_method_takes_one_fp16_step_like_its_fp32_twin(variant, tmp_path):
    """One train_step (the trainer's own StepContext) from the same seed in fp32 and in fp16: fp16 really
    ran (float16 activations), every optimizer has its CPU scaler, nothing was skipped, the same networks
    moved, and the reported losses agree within fp16 accuracy."""
    cfg = compose_cfg(*VARIANTS[variant], *CFG)
    _, losses32, moved32, _ = _one_step(cfg, tmp_path / "fp32", FP32)
    trainer, losses16, moved16, dtypes = _one_step(cfg, tmp_path / "fp16", fp16(2.0**10))
    assert torch.float16 in dtypes
    scalers = trainer.ctx.scalers
    assert scalers.keys() == trainer.optimizers.keys() and all(s._device == "cpu" for s in scalers.values())
    assert all(s.get_scale() == 2.0**10 for s in scalers.values()), "a step was skipped"
    assert all(torch.isfinite(v).all() for v in losses16.values()), losses16
    assert moved16 and moved16 == moved32
    torch.testing.assert_close(losses16, losses32, rtol=2e-2, atol=2e-3)
