"""Report budgets count epochs the way the reports did: as passes over the data.

The reports trained with course-style scripts in which one epoch is one DataLoader pass over the training
images. A WGAN-style script spends a batch on every critic step, so its epoch holds 1 / n_critic as many
generator iterations as a GAN's; OT-GAN draws two real batches (X, X') per iteration. A report row says
"150 epochs"; `${otlab.epochs:150}` turns that into this run's generator iterations:

    steps = max(budget.min_steps, round(epochs * budget.epoch_images / (batch_size * real batches per step)))
    (then at most budget.max_steps where a budget caps it: smoke)

`budget.epoch_images` is one epoch's images at this budget (full: the 60,000 MNIST training images; cpu: a
scaled epoch of 1,280 = 20 batches of 64), and the real batches per step are the method's own count
(`Method.real_batches_per_step`: n_critic for WGAN, WGAN-GP and UOT, 2 for OT-GAN, else 1). Rows compared
"at the same epochs" then see the same data, as in the reports.
"""

from __future__ import annotations

from typing import Any

from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf

RESOLVER = "otlab.epochs"


def real_batches_per_step(method_cfg: DictConfig | dict[str, Any]) -> int:
    """The method class's count of real batches per generator iteration, for these options."""
    return int(get_class(method_cfg["_target_"]).real_batches_per_step(method_cfg))


def epoch_steps(epochs: float, _root_: DictConfig) -> int:
    """Generator iterations that make `epochs` passes over the data at this run's budget, batch and method."""
    budget = _root_.get("budget")
    epoch_images = budget.get("epoch_images") if budget is not None else None
    if epoch_images is None:
        raise ValueError(
            f"${{{RESOLVER}:{epochs}}} counts report epochs, which need a budget: add budget=smoke, "
            "budget=cpu or budget=full (the report presets choose cpu)"
        )
    per_step = int(_root_.batch_size) * real_batches_per_step(_root_.method)
    steps = max(int(budget.get("min_steps") or 1), round(float(epochs) * float(epoch_images) / per_step))
    return min(steps, int(budget.get("max_steps") or steps))


def register() -> None:
    if not OmegaConf.has_resolver(RESOLVER):
        OmegaConf.register_new_resolver(RESOLVER, epoch_steps)


register()
