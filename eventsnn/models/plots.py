"""Learning curves: loss and accuracy per epoch from a CSV log, drawn into a PNG after fit."""

from __future__ import annotations

import csv
import os
from collections import defaultdict
from pathlib import Path

import pytorch_lightning as pl
from pytorch_lightning.loggers import CSVLogger

CURVES = (("loss", ("train_loss_epoch", "val_loss")), ("accuracy", ("train_acc_epoch", "val_acc")))
"""Panel title -> the logged metrics drawn in it."""


def epoch_metrics(metrics_csv: str | os.PathLike) -> dict[str, dict[int, float]]:
    """Per metric, its value at each epoch, read from a Lightning CSV log (blank cells skipped)."""
    series: dict[str, dict[int, float]] = defaultdict(dict)
    with open(metrics_csv, newline="") as f:
        for row in csv.DictReader(f):
            if not row.get("epoch"):
                continue
            epoch = int(float(row["epoch"]))
            for key, value in row.items():
                if key not in ("epoch", "step") and value not in ("", None):
                    series[key][epoch] = float(value)
    return dict(series)


def plot_learning_curves(metrics_csv: str | os.PathLike, png: str | os.PathLike) -> Path:
    """Draw the loss and accuracy per epoch of ``metrics_csv`` into ``png``; returns its path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = epoch_metrics(metrics_csv)
    fig, axes = plt.subplots(1, len(CURVES), figsize=(10, 4))
    for ax, (title, keys) in zip(axes, CURVES, strict=True):
        for key in keys:
            if key in series:
                epochs = sorted(series[key])
                ax.plot(epochs, [series[key][e] for e in epochs], marker="o", label=key)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)
    return Path(png)


class LearningCurvePlot(pl.Callback):
    """After fit, write ``learning_curves.png`` beside the CSV logger's ``metrics.csv``."""

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Plot the curves of the CSV logger, if the trainer has one."""
        for logger in trainer.loggers:
            if isinstance(logger, CSVLogger):
                logger.save()
                metrics = Path(logger.log_dir, "metrics.csv")
                if metrics.exists():
                    plot_learning_curves(metrics, Path(logger.log_dir, "learning_curves.png"))
