"""Trainer: exact resume, checkpoints, divergence guard, precision policies."""

from __future__ import annotations

import pytest
import torch

from otgan_lab import checkpoint
from otgan_lab.amp import StepContext, resolve_precision
from tests.helpers import compose_cfg, tiny_trainer

CFG = ("dataset=ring8", "dataset.n_points=4096", "batch_size=64")


def _state(trainer):
    return {k: v.clone() for k, v in trainer.method.state_dict().items()}


@pytest.mark.parametrize("method", ["gan", "wgan_gp"])
def test_resume_from_a_mid_run_checkpoint_equals_the_uninterrupted_run(method, tmp_path):
    cfg = compose_cfg(f"method={method}", "trainer.ema.enabled=true", *CFG)
    full = tiny_trainer(cfg, tmp_path / "full", steps=12, checkpoint_every=6, keep_checkpoints=5,
                        ema={"enabled": True, "decay": 0.9})
    assert full.fit().status == "completed"
    mid = checkpoint.checkpoint_path(tmp_path / "full" / "checkpoints", 6)
    assert mid.exists()

    resumed = tiny_trainer(cfg, tmp_path / "resumed", steps=12, ema={"enabled": True, "decay": 0.9})
    resumed.resume(mid)
    assert resumed.step == 6
    assert resumed.fit().status == "completed"
    a, b = _state(full), _state(resumed)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs after resume"
    assert all(torch.equal(x, y) for x, y in zip(full.ema.shadow.state_dict().values(),
                                                  resumed.ema.shadow.state_dict().values()))


def test_checkpoints_are_atomic_pruned_and_loadable_weights_only(tmp_path):
    trainer = tiny_trainer(compose_cfg(*CFG), tmp_path, steps=8, checkpoint_every=2, keep_checkpoints=2)
    trainer.fit()
    found = checkpoint.list_checkpoints(tmp_path / "checkpoints")
    assert [p.name for p in found] == ["step_00000006.pt", "step_00000008.pt"]
    assert not list((tmp_path / "checkpoints").glob(".*tmp*"))
    state = torch.load(found[-1], weights_only=True)
    assert state["step"] == 8 and isinstance(state["config"], dict)


def test_corrupt_checkpoint_names_the_file_and_keeps_the_previous(tmp_path):
    trainer = tiny_trainer(compose_cfg(*CFG), tmp_path, steps=4, checkpoint_every=2)
    trainer.fit()
    previous, last = checkpoint.list_checkpoints(tmp_path / "checkpoints")
    last.write_bytes(b"not a checkpoint")
    fresh = tiny_trainer(compose_cfg(*CFG), tmp_path / "other", steps=4)
    with pytest.raises(checkpoint.CheckpointError, match=str(last.name)):
        fresh.resume(last)
    assert previous.exists()
    fresh.resume(previous)
    assert fresh.step == 2


def test_incompatible_checkpoint_is_a_clear_error(tmp_path):
    trainer = tiny_trainer(compose_cfg(*CFG), tmp_path, steps=2, checkpoint_every=2)
    trainer.fit()
    other = tiny_trainer(compose_cfg(*CFG, "model.nets.generator.hidden=[8]"), tmp_path / "b", steps=2)
    with pytest.raises(checkpoint.CheckpointError, match="does not fit"):
        other.resume(checkpoint.list_checkpoints(tmp_path / "checkpoints")[-1])


def test_divergence_is_detected_and_the_last_good_checkpoint_kept(tmp_path):
    trainer = tiny_trainer(compose_cfg(*CFG, "method=gan"), tmp_path, steps=20, checkpoint_every=2,
                           log_every=5)
    original = trainer.method.train_step

    def poisoned(real, ctx):
        out = original(real, ctx)
        if ctx.step >= 6:
            out["generator_loss"] = out["generator_loss"] * float("nan")
        return out

    trainer.method.train_step = poisoned
    outcome = trainer.fit()
    assert outcome.status == "diverged"
    assert outcome.step == 10  # detected at the first log step after the NaN
    steps = [int(p.stem.split("_")[1]) for p in checkpoint.list_checkpoints(tmp_path / "checkpoints")]
    assert max(steps) <= 6  # nothing written after the first non-finite step


def test_bf16_autocast_trains_on_cpu(tmp_path):
    cfg = compose_cfg(*CFG, "precision=bf16", "method=wgan_gp")
    trainer = tiny_trainer(cfg, tmp_path, steps=3)
    assert trainer.ctx.precision.name == "bf16"
    outcome = trainer.fit()
    assert outcome.status == "completed"


def test_input_grad_is_unscaled_under_a_grad_scaler():
    """The AMP penalty recipe: differentiate the scaled output, divide by the scale (checked with a fake
    scaler on CPU since fp16 autocast needs CUDA)."""

    class FakeScaler:
        def scale(self, t):
            return t * 1024.0

        def _get_scale_async(self):
            return torch.tensor(1024.0)

    ctx = StepContext({}, resolve_precision("fp32", "cpu"), scalers={"critic": FakeScaler()})
    x = torch.randn(4, 3, requires_grad=True)
    w = torch.tensor([1.0, -2.0, 0.5])
    g = ctx.input_grad(x @ w, x, "critic")
    assert torch.allclose(g, w.expand(4, 3))


def test_optimize_touches_only_the_named_network():
    a, b = torch.nn.Linear(2, 1), torch.nn.Linear(1, 1)
    opts = {"a": torch.optim.SGD(a.parameters(), lr=0.1), "b": torch.optim.SGD(b.parameters(), lr=0.1)}
    ctx = StepContext(opts, resolve_precision("fp32", "cpu"))
    b_before = [p.clone() for p in b.parameters()]
    ctx.optimize("a", b(a(torch.randn(5, 2))).pow(2).mean())
    assert all(p.grad is None for p in b.parameters())
    assert all(torch.equal(p, q) for p, q in zip(b.parameters(), b_before))


def test_stop_request_ends_after_a_whole_step_with_a_checkpoint(tmp_path):
    """What the Ctrl-C / SIGTERM handler of `otlab train` does: ask to stop; the step in flight completes."""
    trainer = tiny_trainer(compose_cfg(*CFG), tmp_path, steps=50)
    trainer.stop_requested = True
    outcome = trainer.fit()
    assert outcome.status == "interrupted" and outcome.step == 1
    assert checkpoint.list_checkpoints(tmp_path / "checkpoints")[-1].name == "step_00000001.pt"
