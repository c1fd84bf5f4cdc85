"""HDF5 checkpoint format and the Lightning CheckpointIO plugin (layout: docs/checkpoint-format.md).

Checkpoints are HDF5 files of plain datasets and attributes: reading one never unpickles or runs
code. Writes are atomic. Lightning: ``HDF5CheckpointIO`` (plugin) and ``HDF5ModelCheckpoint``
(callback); inference: ``save``, ``load_model``, ``load_weights``; inspection and conversion:
``describe``, ``convert``.
"""

from eventsnn.checkpoint.api import (
    check_state_dict,
    convert,
    describe,
    load_model,
    load_weights,
    save,
)
from eventsnn.checkpoint.errors import CheckpointError
from eventsnn.checkpoint.io import FORMAT_VERSION, read_checkpoint, write_checkpoint
from eventsnn.checkpoint.plugin import HDF5CheckpointIO, HDF5ModelCheckpoint

__all__ = [
    "FORMAT_VERSION",
    "CheckpointError",
    "HDF5CheckpointIO",
    "HDF5ModelCheckpoint",
    "check_state_dict",
    "convert",
    "describe",
    "load_model",
    "load_weights",
    "read_checkpoint",
    "save",
    "write_checkpoint",
]
