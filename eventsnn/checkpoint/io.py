"""Checkpoint files: an atomic write of a checkpoint dict and a checked read back.

A file is HDF5 with a header in the root attributes and the checkpoint dict under the group
``/checkpoint`` (layout: docs/checkpoint-format.md). Writes go to a temporary file in the same
folder, which is fsynced and renamed over the target, and the folder is fsynced: a crash at any
point leaves either the previous file or the new one, whole.
"""

from __future__ import annotations

import contextlib
import json
import os
import zipfile
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch

import eventsnn
from eventsnn.atomic import written_atomically
from eventsnn.checkpoint.errors import CheckpointError, CheckpointNotFoundError
from eventsnn.checkpoint.format import read_tree, write_tree

FORMAT_NAME = "eventsnn-checkpoint"
FORMAT_VERSION = 1
TREE_GROUP = "checkpoint"
MODEL_CLASS_KEY = "model_class"
HPARAMS_KEY = "hyper_parameters"
DATAMODULE_HPARAMS_KEY = "datamodule_hyper_parameters"


def write_checkpoint(path: str | os.PathLike, checkpoint: Mapping[str, Any]) -> None:
    """Write `checkpoint` to `path` atomically; on any error the previous file stays as it was."""
    with written_atomically(path) as tmp, h5py.File(tmp, "w-") as file:
        _write_header(file, checkpoint)
        write_tree(file.create_group(TREE_GROUP), checkpoint)


def read_checkpoint(
    path: str | os.PathLike,
    device: torch.device | str | None = None,
    keys: Iterable[str] | None = None,
) -> dict[str, Any]:
    """Read the checkpoint dict of `path`, tensors on `device` (CPU when None).

    With `keys`, only those top-level entries that exist (e.g. ``["hyper_parameters"]``).
    """
    with open_checkpoint(path) as file:
        try:
            return read_tree(file[TREE_GROUP], device, keys)
        except CheckpointError as error:
            raise CheckpointError(f"{path}: {error}") from error
        except OSError as error:  # a damaged object header inside an openable file
            raise CheckpointError(f"{path}: damaged HDF5 file ({error})") from error


@contextlib.contextmanager
def open_checkpoint(path: str | os.PathLike) -> Iterator[h5py.File]:
    """Open `path` read-only after checking it is a checkpoint this version can read."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointNotFoundError(f"{path}: no checkpoint file there")
    try:
        file = h5py.File(path, "r")
    except OSError as error:
        if h5py.is_hdf5(path):
            what = "truncated or damaged HDF5 file"
        elif zipfile.is_zipfile(path):
            what = "not an HDF5 file but a torch.save zip (convert it: eventsnn ckpt convert)"
        else:
            what = "not an HDF5 file"
        raise CheckpointError(f"{path}: {what} ({error})") from error
    with file:
        _check_header(file, path)
        yield file


def _write_header(file: h5py.File, checkpoint: Mapping[str, Any]) -> None:
    file.attrs["format"] = FORMAT_NAME
    file.attrs["format_version"] = FORMAT_VERSION
    file.attrs["eventsnn_version"] = eventsnn.__version__
    file.attrs["created"] = datetime.now(UTC).isoformat(timespec="seconds")
    # readable copies for other tools (h5dump, other languages); readers use the typed tree
    if MODEL_CLASS_KEY in checkpoint:
        file.attrs[MODEL_CLASS_KEY] = str(checkpoint[MODEL_CLASS_KEY])
    for key in (HPARAMS_KEY, DATAMODULE_HPARAMS_KEY):
        if key in checkpoint:
            file.attrs[key] = json.dumps(checkpoint[key], default=repr)


def _check_header(file: h5py.File, path: Path) -> None:
    if file.attrs.get("format") != FORMAT_NAME:
        raise CheckpointError(f"{path}: not an eventsnn checkpoint (root attribute 'format')")
    version = file.attrs.get("format_version")
    if not isinstance(version, np.integer):
        raise CheckpointError(f"{path}: root attribute 'format_version' is missing or not an int")
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: format_version {version} is newer than this eventsnn reads "
            f"({FORMAT_VERSION}); upgrade eventsnn"
        )
    if not isinstance(file.get(TREE_GROUP), h5py.Group):
        raise CheckpointError(f"{path}: group '/{TREE_GROUP}' is missing")
