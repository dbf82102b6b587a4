"""Training records: metrics.csv, TensorBoard scalars and a PNG of the learning curves."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from sidrec.io import atomic_open, atomic_path


def write_metrics_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    """Rewrite the whole CSV from the rows (atomic; rows are the checkpointed history)."""
    if not rows:
        return
    keys: list[str] = []
    for r in rows:
        keys.extend(k for k in r if k not in keys)
    with atomic_open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)


def plot_curves(path: Path, rows: list[dict[str, Any]]) -> None:
    """Train loss and validation Recall/NDCG@10 against steps."""
    if not rows:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [r["step"] for r in rows]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    a.plot(steps, [r["train_loss"] for r in rows], marker=".")
    a.set_xlabel("step")
    a.set_ylabel("train loss (per SID token)")
    for key in ("val_recall@10", "val_ndcg@10"):
        if key in rows[0]:
            b.plot(steps, [r[key] for r in rows], marker=".", label=key)
    b.set_xlabel("step")
    b.legend()
    b.set_title("validation")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


class TensorBoardLog:
    """Thin SummaryWriter wrapper; ``purge_step`` drops events past a resumed checkpoint."""

    def __init__(self, logdir: Path, purge_step: int | None):
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(logdir), purge_step=purge_step)

    def scalars(self, step: int, values: dict[str, float]) -> None:
        for k, v in values.items():
            self.writer.add_scalar(k, v, step)

    def close(self) -> None:
        self.writer.flush()
        self.writer.close()
