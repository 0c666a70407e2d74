"""Report budgets count epochs as passes over the data (REPORTS.md, "what an epoch is").

Oracle: the definition written out here, generator iterations = epochs x images per epoch / (batch x real
batches per iteration), with the schedules of the papers: WGAN and WGAN-GP spend one real batch per critic
step (5 per iteration), OT-GAN two (X and X'), a GAN one; and, for the per-method counts themselves, the real
batches a method's train_step actually draws.
"""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from otgan_lab import build
from otgan_lab.budget import real_batches_per_step
from otgan_lab.errors import ConfigError
from tests.helpers import compose_cfg, options, tiny_trainer


def _row(tag: str, report: str, budget: str, *extra: str) -> dict:
    cfg = compose_cfg(f"experiment=report_{report}", f"+report_row={tag}", f"budget={budget}", *extra)
    return OmegaConf.to_container(cfg, resolve=True)


@pytest.mark.parametrize(("tag", "report", "epochs", "batch", "batches_per_step"), [
    ("r4_gan", "r4", 150, 64, 1),
    ("r4_wgan_gp_150ep", "r4", 150, 64, 5),
    ("r4_wgan_bn", "r4", 150, 64, 5),
    ("r1_uot_60ep", "r1", 60, 64, 1),
    ("r3_wgan_clip_c001", "r3", 100, 64, 5),   # no epoch count in its report: the budget's 100 epochs
    ("r2_otgan_b500", "r2", 100, 500, 2),
])
@pytest.mark.parametrize(("budget", "epoch_images"), [("cpu", 1280), ("full", 60000)])
def test_report_rows_train_the_reports_data_passes(tag, report, epochs, batch, batches_per_step, budget,
                                                   epoch_images):
    plain = _row(tag, report, budget)
    assert plain["batch_size"] == batch
    assert plain["trainer"]["steps"] == round(epochs * epoch_images / (batch * batches_per_step))
    # so every row of a report sees the same images per epoch, whatever its critic schedule
    images = plain["trainer"]["steps"] * batch * batches_per_step
    assert images == pytest.approx(epochs * epoch_images, rel=0.01)


def test_the_second_learning_rate_phase_starts_after_150_epochs_of_data():
    plain = _row("r4_wgan_gp_180ep_lr2", "r4", "cpu")
    assert plain["trainer"]["steps"] == 180 * 1280 // (64 * 5)           # 720 WGAN-GP iterations
    assert plain["trainer"]["lr_schedule"]["milestones"] == [150 * 1280 // (64 * 5)]
    assert plain["eval"]["every"] == 25 * 1280 // (64 * 5)               # learning-curve points per epochs


def test_smoke_budget_keeps_every_row_short_but_not_empty():
    assert _row("r2_otgan_b500", "r2", "smoke")["trainer"]["steps"] == 8  # min_steps
    assert _row("r4_gan", "r4", "smoke")["trainer"]["steps"] == round(150 * 20 / 64)
    assert _row("r5_nsgan_cifar10", "r5", "smoke")["trainer"]["steps"] == 60  # max_steps (batch 16)


@pytest.mark.parametrize(("budget", "width"), [("cpu", 8), ("smoke", 8), ("full", 32)])
def test_r2_generator_width_follows_the_budget_for_every_row_alike(budget, width):
    """At width 32 a batch-500 OT-GAN iteration takes ~40 s on one CPU thread: the cpu and smoke budgets
    narrow R2's generator for all its rows; full trains the model's own width."""
    for tag in ("r2_otgan_b500", "r2_otgan_b100", "r2_otgan_ce_b500", "r2_otgan_digit8_b500"):
        cfg = compose_cfg("experiment=report_r2", f"+report_row={tag}", f"budget={budget}")
        net = build.build_method(cfg, torch.device("cpu")).nets["generator"]
        assert net.base[0] == 4 * width and net.convs[-2].in_channels == width


def test_epochs_without_a_budget_are_refused_with_the_fix():
    cfg = compose_cfg("dataset=mnist", "+report_row=r4_gan")
    with pytest.raises(ConfigError, match="budget=cpu"):
        build.check_config(cfg)


# The declared counts are what the methods draw: one train_step through a counting real(n).
@pytest.mark.parametrize("method", options("method"))
def test_declared_real_batches_are_what_a_step_draws(method, tmp_path):
    cfg = compose_cfg(f"method={method}", "dataset=ring8", "dataset.n_points=2048", "batch_size=32")
    trainer = tiny_trainer(cfg, tmp_path, steps=1)
    sizes = []
    draw = trainer.data.batch

    def counting(n):
        sizes.append(n)
        return draw(n)

    trainer.data.batch = counting
    trainer.fit()
    declared = real_batches_per_step(cfg.method)
    assert sizes == [32] * declared, (method, sizes, declared)
