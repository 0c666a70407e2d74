"""`--wandb`: the leaderboard as a W&B Table in a summary run of the sweep's group (offline unless WANDB_MODE
says otherwise). The printed table is the product, W&B a copy: any failure warns and returns False."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

from otgan_lab.table.render import csv_fields, flat_record


def log_to_wandb(records: list[dict[str, Any]], metric: str, group: str | None, out_dir: Path,
                 project: str = "otgan_lab") -> bool:
    """Log the table (the csv columns) as a W&B Table; False with a warning if anything fails."""
    try:
        import wandb

        columns = csv_fields(records)
        data = [[flat_record(r, metric).get(c) for c in columns] for r in records]
        run = wandb.init(project=os.environ.get("WANDB_PROJECT", project), group=group, job_type="table",
                         name=f"table-{group or 'runs'}", mode=os.environ.get("WANDB_MODE", "offline"),
                         dir=str(out_dir), reinit="finish_previous",
                         settings=wandb.Settings(silent=True, console="off"))
        run.log({"leaderboard": wandb.Table(columns=columns, data=data)})
        run.finish()
        return True
    except Exception as exc:
        warnings.warn(f"W&B table not logged ({exc.__class__.__name__}: {exc})", stacklevel=2)
        return False
