"""Learning-rate schedules by generator iteration, applied by the trainer to every optimizer.

`trainer.lr_schedule: {milestones: [m1, m2, ...], gamma: g}`: from generator iteration m_i on, every
optimizer's learning rate is its configured value times g ** i (a step schedule, e.g. report R4's
"150 + 30 epochs, second learning rate"). The rate is a pure function of the step, so a resumed run gets
the same rates as an uninterrupted one with nothing extra in the checkpoint.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence

import torch


def schedule_problems(milestones: object, gamma: object) -> list[str]:
    """What is wrong with a schedule's settings (empty when valid)."""
    problems = []
    if not isinstance(milestones, Sequence) or isinstance(milestones, str) or not milestones or not all(
            isinstance(m, int) and not isinstance(m, bool) and m >= 1 for m in milestones):
        problems.append(f"trainer.lr_schedule.milestones must be a non-empty list "
                        f"of generator iterations >= 1 (got {milestones!r})")
    elif list(milestones) != sorted(set(milestones)):
        problems.append("trainer.lr_schedule.milestones must be strictly increasing "
                        f"(got {list(milestones)})")
    if not isinstance(gamma, (int, float)) or isinstance(gamma, bool) or gamma <= 0:
        problems.append(f"trainer.lr_schedule.gamma must be a positive factor (got {gamma!r})")
    return problems


class StepSchedule:
    def __init__(self, optimizers: Mapping[str, torch.optim.Optimizer], milestones: Sequence[int],
                 gamma: float = 0.1) -> None:
        problems = schedule_problems(milestones, gamma)
        if problems:
            raise ValueError("; ".join(problems))
        self.optimizers, self.milestones, self.gamma = dict(optimizers), list(milestones), float(gamma)
        self.base = {name: [group["lr"] for group in opt.param_groups]
                     for name, opt in self.optimizers.items()}
        self._applied: int | None = None

    def apply(self, step: int) -> None:
        """Set every optimizer's rates for `step`; a no-op between milestones (no per-step cost)."""
        phase = bisect.bisect_right(self.milestones, step)
        if phase == self._applied:
            return
        for name, opt in self.optimizers.items():
            for group, base in zip(opt.param_groups, self.base[name]):
                group["lr"] = base * self.gamma ** phase
        self._applied = phase

    def reset(self) -> None:
        """Forget the applied phase (after an optimizer state load overwrote the rates)."""
        self._applied = None
