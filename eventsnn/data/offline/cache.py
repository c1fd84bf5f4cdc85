"""Generated-once event datasets, cached as one HDF5 file per parameter set.

Layout of a cache file (h5py): ``/events/{x,y,t,p}`` hold all recordings concatenated,
contiguous and uncompressed (slicing an item then costs a fraction of a millisecond, ~5x less than
with gzip); ``/offsets`` (n + 1 int64) delimits recording ``i`` as ``offsets[i]:offsets[i + 1]``;
``/labels`` (int64) and ``/train`` (bool) give each recording's class and split. Attributes hold
the sensor size, class names and the generation parameters as JSON. The file name carries a hash of
the parameters and of ``CACHE_VERSION``, so changing either generates a new file instead of serving
stale data (the failure of tonic's disk cache, its issue #160).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from eventsnn.atomic import written_atomically
from eventsnn.events.core import EVENT_DTYPE, EventsError, SensorSize

CACHE_VERSION = 2
"""Bump when the generation code changes what it produces for the same parameters."""


@dataclass(frozen=True)
class GeneratedSet:
    """What a generator returns: one event array per recording, with its label and split."""

    recordings: Sequence[np.ndarray]
    labels: np.ndarray
    train: np.ndarray


def stratified_test_mask(labels: np.ndarray, every: int = 5) -> np.ndarray:
    """True for every ``every``-th item of each class in order (ranks every-1, 2*every-1, ...)."""
    rank = np.zeros(len(labels), dtype=np.int64)
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        rank[members] = np.arange(len(members))
    return rank % every == every - 1


def cache_path(root: str | os.PathLike, name: str, params: dict[str, Any]) -> Path:
    """Where the dataset ``name`` generated with ``params`` is cached under ``root``."""
    key = json.dumps({"cache_version": CACHE_VERSION, **params}, sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    return Path(root) / name / f"{name.lower()}-{digest}.h5"


def write_cache(
    path: Path,
    generated: GeneratedSet,
    sensor_size: SensorSize,
    classes: Sequence[str],
    params: dict[str, Any],
) -> None:
    """Write a generated dataset to ``path`` atomically (temporary file, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    events = np.concatenate([np.asarray(r, dtype=EVENT_DTYPE) for r in generated.recordings])
    offsets = np.zeros(len(generated.recordings) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(r) for r in generated.recordings])
    with written_atomically(path, durable=False) as tmp, h5py.File(tmp, "w") as f:
        group = f.create_group("events")
        for field in EVENT_DTYPE.names:
            group.create_dataset(field, data=events[field])
        f["offsets"] = offsets
        f["labels"] = np.asarray(generated.labels, dtype=np.int64)
        f["train"] = np.asarray(generated.train, dtype=bool)
        f.attrs["sensor_size"] = np.asarray(sensor_size, dtype=np.int64)
        f.attrs["classes"] = json.dumps(list(classes))
        f.attrs["params"] = json.dumps(params, sort_keys=True)
        f.attrs["cache_version"] = CACHE_VERSION
        f.attrs["t_unit"] = "us"


class CachedEventDataset:
    """A tonic-style dataset of ``(events, label)`` read from a cache file, generated on first use.

    Items are sliced from the HDF5 file, which each process opens lazily on its first read, so the
    dataset is safe to hand to DataLoader worker processes.
    """

    name: str
    sensor_size: SensorSize
    classes: list[str]

    def __init__(
        self,
        root: str | os.PathLike,
        train: bool,
        transform: Callable | None,
        target_transform: Callable | None,
        params: dict[str, Any],
        generate: Callable[[], GeneratedSet],
    ) -> None:
        self.train = train
        self.transform = transform
        self.target_transform = target_transform
        self.params = params
        self.path = cache_path(root, self.name, params)
        if not self.path.exists():
            write_cache(self.path, generate(), self.sensor_size, self.classes, params)
        try:
            with h5py.File(self.path, "r") as f:
                in_split = f["train"][:] == train
                self._offsets = f["offsets"][:]
                labels = f["labels"][:]
        except (OSError, KeyError) as err:
            raise EventsError(f"cannot read dataset cache {self.path}: {err}") from err
        self._indices = np.flatnonzero(in_split)
        self.targets = labels[in_split]
        self._open_file: h5py.File | None = None
        self._open_columns: list[h5py.Dataset] = []
        self._columns_pid: int | None = None

    def __len__(self) -> int:
        return len(self._indices)

    def __getitem__(self, index: int) -> tuple[np.ndarray, int]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"{self.name} index {index} out of range for {len(self)} items")
        recording = self._indices[index]
        start, stop = self._offsets[recording], self._offsets[recording + 1]
        events = np.empty(stop - start, dtype=EVENT_DTYPE)
        for field, column in zip(EVENT_DTYPE.names, self._columns(), strict=True):
            events[field] = column[start:stop]
        target = int(self.targets[index])
        if self.transform is not None:
            events = self.transform(events)
        if self.target_transform is not None:
            target = self.target_transform(target)
        return events, target

    def _columns(self) -> list[h5py.Dataset]:
        """The x, y, t, p datasets, opened once per process (h5py handles must not cross a fork)."""
        if self._columns_pid != os.getpid():
            try:
                self._open_file = h5py.File(self.path, "r")
                group = self._open_file["events"]
                self._open_columns = [group[field] for field in EVENT_DTYPE.names]
            except (OSError, KeyError) as err:
                raise EventsError(f"cannot read dataset cache {self.path}: {err}") from err
            self._columns_pid = os.getpid()
        return self._open_columns

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_open_file"] = None
        state["_open_columns"] = []
        state["_columns_pid"] = None
        return state

    def __repr__(self) -> str:
        split = "train" if self.train else "test"
        return f"{type(self).__name__}({split}, {len(self)} recordings, {self.path})"
