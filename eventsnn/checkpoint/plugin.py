"""Lightning integration: the HDF5 CheckpointIO plugin and a ModelCheckpoint that writes `.h5`.

Use both together (the training CLI does)::

    Trainer(plugins=[HDF5CheckpointIO()], callbacks=[HDF5ModelCheckpoint(save_last=True)])

The plugin turns every checkpoint Lightning saves or loads (ModelCheckpoint,
``trainer.save_checkpoint``, ``trainer.fit(ckpt_path=...)``) into an HDF5 file. The callback
names files ``*.h5`` and adds what exact resuming and :func:`eventsnn.checkpoint.load_model` need:
the module's class path and the global random states.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from lightning_fabric.utilities.seed import _collect_rng_states, _set_rng_states
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.plugins.io import CheckpointIO

from eventsnn.checkpoint.errors import CheckpointError
from eventsnn.checkpoint.io import MODEL_CLASS_KEY, read_checkpoint, write_checkpoint

RNG_STATES_KEY = "rng_states"


def class_path(cls: type) -> str:
    """Import path of a class, as stored in checkpoints: ``module.QualifiedName``."""
    return f"{cls.__module__}.{cls.__qualname__}"


class HDF5CheckpointIO(CheckpointIO):
    """Lightning CheckpointIO that saves and loads checkpoints as HDF5 files (never pickle).

    Writes are atomic (temporary file, fsync, rename). `map_location` may be None (CPU), a device
    or a device name; `weights_only` is accepted and ignored, as loading never runs code.
    """

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | os.PathLike, storage_options: Any = None
    ) -> None:
        """Write the checkpoint dict to `path` atomically."""
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} does not take storage_options")
        write_checkpoint(path, checkpoint)

    def load_checkpoint(
        self,
        path: str | os.PathLike,
        map_location: torch.device | str | None = None,
        weights_only: bool | None = None,
    ) -> dict[str, Any]:
        """Read the checkpoint dict of `path`; raises CheckpointError naming the path and key."""
        if map_location is not None and not isinstance(map_location, torch.device | str):
            raise CheckpointError(
                f"{path}: map_location must be None, a torch.device or a device name, "
                f"got {type(map_location).__name__}"
            )
        return read_checkpoint(path, device=map_location)

    def remove_checkpoint(self, path: str | os.PathLike) -> None:
        """Delete the checkpoint file at `path`, if any."""
        Path(path).unlink(missing_ok=True)


class HDF5ModelCheckpoint(ModelCheckpoint):
    """ModelCheckpoint that names files ``*.h5`` and stores the class path and random states.

    The global random states (torch, numpy, python) are saved with each checkpoint and put back
    when resuming: on loading, and again after the sanity check, whose data loaders draw from the
    torch generator, so that the first resumed epoch shuffles (and drops out) exactly as the
    uninterrupted run does. Resuming is exact from end-of-epoch checkpoints.
    """

    FILE_EXTENSION = ".h5"
    _resumed_rng_states: dict[str, Any] | None = None

    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        """Add the module's class path and the global random states to the checkpoint."""
        checkpoint[MODEL_CLASS_KEY] = class_path(type(pl_module))
        checkpoint[RNG_STATES_KEY] = _collect_rng_states()

    def on_load_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        """Put back the saved random states, and keep them for after the sanity check."""
        self._resumed_rng_states = checkpoint.get(RNG_STATES_KEY)
        if self._resumed_rng_states is not None:
            _set_rng_states(self._resumed_rng_states)

    def on_sanity_check_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Undo what the sanity check drew from the generators since resuming."""
        if self._resumed_rng_states is not None:
            _set_rng_states(self._resumed_rng_states)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Training runs from here: later sanity checks must not rewind the generators."""
        super().on_train_start(trainer, pl_module)
        self._resumed_rng_states = None
