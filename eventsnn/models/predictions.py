"""`PredictionsWriter`: what `eventsnn predict` computed, kept in an HDF5 file.

Lightning's ``predict`` returns the outputs of ``predict_step`` and the CLI drops them; this
callback stores, per sample in loader order, the class probabilities, the predicted class and,
when the batches carry labels, the label, plus the accuracy over them. The file is written once
at the end, atomically; with several processes each rank writes its own file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import BasePredictionWriter

from eventsnn.atomic import written_atomically


class PredictionsWriter(BasePredictionWriter):
    """Collects each predict batch's probabilities (and labels) and writes them to ``path``."""

    def __init__(self, path: str | os.PathLike) -> None:
        super().__init__(write_interval="batch")
        self.path = Path(path)
        self.probabilities: list[np.ndarray] = []
        self.labels: list[np.ndarray] = []

    def on_predict_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.probabilities, self.labels = [], []

    def write_on_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        prediction: Any,
        batch_indices: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        """Keep the batch's probabilities ``(B, classes)`` and, if it has them, its labels."""
        self.probabilities.append(torch.as_tensor(prediction).detach().float().cpu().numpy())
        if isinstance(batch, list | tuple) and len(batch) > 1:
            self.labels.append(torch.as_tensor(batch[1]).cpu().numpy())

    def on_predict_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Write the file and print where it is (with the accuracy when labels were there)."""
        path = self.path
        if trainer.world_size > 1:
            path = path.with_name(f"{path.stem}.rank{trainer.global_rank}{path.suffix}")
        summary = write_predictions(path, self.probabilities, self.labels, type(pl_module))
        print(f"predictions: {summary} -> {path}")


def write_predictions(
    path: Path, probabilities: list[np.ndarray], labels: list[np.ndarray], model: type
) -> str:
    """Write ``probabilities``, ``predicted`` (and ``labels``, ``accuracy``) to ``path``; returns
    a one-line summary."""
    probs = np.concatenate(probabilities) if probabilities else np.zeros((0, 0), np.float32)
    predicted = probs.argmax(1) if probs.size else np.zeros(0, np.int64)
    summary = f"{len(predicted)} samples"
    with written_atomically(path) as tmp, h5py.File(tmp, "w") as out:
        out.attrs["model"] = f"{model.__module__}.{model.__qualname__}"
        out.create_dataset("probabilities", data=probs)
        out.create_dataset("predicted", data=predicted)
        if labels and sum(len(x) for x in labels) == len(predicted):
            truth = np.concatenate(labels)
            accuracy = float((truth == predicted).mean()) if len(truth) else float("nan")
            out.create_dataset("labels", data=truth)
            out.attrs["accuracy"] = accuracy
            summary += f", accuracy {accuracy:.2%}"
    return summary
