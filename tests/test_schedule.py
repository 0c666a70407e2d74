"""trainer.lr_schedule: closed-form rates per step, resume across a milestone, config validation."""

from __future__ import annotations

import pytest
import torch

from otgan_lab import build, checkpoint
from otgan_lab.schedule import StepSchedule
from tests.helpers import compose_cfg, tiny_trainer

CFG = ("dataset=ring8", "dataset.n_points=512", "batch_size=32", "logger=none")


def test_rates_follow_the_closed_form_per_step():
    a = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.5)
    b = torch.optim.Adam([{"params": [torch.zeros(1, requires_grad=True)], "lr": 1e-3},
                          {"params": [torch.zeros(1, requires_grad=True)], "lr": 4e-3}])
    schedule = StepSchedule({"a": a, "b": b}, milestones=[3, 5], gamma=0.5)
    for step in range(8):
        schedule.apply(step)
        k = (step >= 3) + (step >= 5)
        assert a.param_groups[0]["lr"] == pytest.approx(0.5 * 0.5 ** k)
        assert [g["lr"] for g in b.param_groups] == pytest.approx([1e-3 * 0.5 ** k, 4e-3 * 0.5 ** k])
    schedule.apply(0)  # going back (a resume from an earlier checkpoint) restores the first phase
    assert a.param_groups[0]["lr"] == pytest.approx(0.5)


@pytest.mark.parametrize("bad", [dict(milestones=[], gamma=0.1), dict(milestones=[5, 3], gamma=0.1),
                                 dict(milestones=[0], gamma=0.1), dict(milestones=[3], gamma=0.0)])
def test_bad_schedules_are_refused(bad):
    with pytest.raises(ValueError, match="lr_schedule"):
        StepSchedule({"a": torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)}, **bad)


def test_check_config_names_the_bad_schedule_before_training():
    cfg = compose_cfg(*CFG, "+trainer.lr_schedule={milestones:[10,5],gamma:0.1}")
    with pytest.raises(build.ConfigError, match="strictly increasing"):
        build.check_config(cfg)
    build.check_config(compose_cfg(*CFG, "+trainer.lr_schedule={milestones:[5],gamma:0.1}"))


def test_resume_across_a_milestone_equals_the_uninterrupted_run(tmp_path):
    cfg = compose_cfg("method=gan", *CFG)
    schedule = {"milestones": [4, 9], "gamma": 0.1}
    full = tiny_trainer(cfg, tmp_path / "full", steps=12, checkpoint_every=6, keep_checkpoints=5,
                        lr_schedule=schedule)
    assert full.fit().status == "completed"
    assert full.optimizers["generator"].param_groups[0]["lr"] == pytest.approx(2e-4 * 0.01)
    resumed = tiny_trainer(cfg, tmp_path / "resumed", steps=12, lr_schedule=schedule)
    resumed.resume(checkpoint.checkpoint_path(tmp_path / "full" / "checkpoints", 6))
    assert resumed.fit().status == "completed"
    for (k, a), b in zip(full.method.state_dict().items(), resumed.method.state_dict().values()):
        assert torch.equal(a, b), f"{k} differs after resume"


def test_interpolated_milestones_reach_the_trainer_resolved(tmp_path):
    """Report rows set milestones by interpolation (${otlab.epochs:150}): `otlab train` must resolve them."""
    from omegaconf import OmegaConf

    from otgan_lab import train

    cfg = compose_cfg("method=gan", *CFG, "trainer.steps=6", "trainer.log_every=3", "eval.n_samples=200",
                      "metrics.points2d.w2_points=100")
    OmegaConf.set_struct(cfg, False)
    cfg.trainer.lr_schedule = OmegaConf.create({"milestones": ["${trainer.log_every}"], "gamma": 0.5})
    record = train.run(cfg, tmp_path / "run")
    assert record["status"] == "completed", record.get("error")
    state = checkpoint.load(record["checkpoint"])
    assert state["optimizers"]["generator"]["param_groups"][0]["lr"] == pytest.approx(2e-4 * 0.5)  # applied
