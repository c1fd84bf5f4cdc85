"""Datasets by name: tonic's (downloaded into the data root on request) and the offline ones.

A recipe names a dataset (``dataset: NMNIST``); `open_dataset` finds its files under the data
root, or downloads them with tonic when ``download: true``, or stops with one `ConfigError` line
that names the missing files, the download size and the ``data.download`` key.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from eventsnn.data.errors import ConfigError
from eventsnn.data.pipeline import Pipeline
from eventsnn.events.core import EVENT_DTYPE, SensorSize


def as_event_array(events: np.ndarray) -> np.ndarray:
    """Events in any of tonic's per-dataset dtypes as the project's (x, y int16, t int64, p bool).

    Audio datasets (SHD: fields t, x, p) get ``y = 0``; a missing polarity becomes ON.
    """
    if events.dtype == EVENT_DTYPE:
        return events
    names = events.dtype.names or ()
    converted = np.zeros(len(events), dtype=EVENT_DTYPE)
    converted["p"] = True
    for name in EVENT_DTYPE.names:
        if name in names:
            converted[name] = events[name]
    return converted


@dataclass(frozen=True)
class TonicEntry:
    """A tonic dataset: its class name in ``tonic.datasets`` and where its split lives on disk.

    ``splits`` holds the train and test paths under ``root/<class name>/`` (a folder or a file);
    ``sample_glob`` matches one sample file under a folder (empty when the split is one file).
    A dataset without a test split has ``splits = ("", )`` and is split by the data module.
    """

    class_name: str
    splits: tuple[str, ...]
    sample_glob: str
    download_size: str

    @property
    def cls(self) -> type:
        """The tonic dataset class."""
        return getattr(importlib.import_module("tonic.datasets"), self.class_name)

    @property
    def sensor_size(self) -> SensorSize:
        """(width, height, polarities) of the recordings."""
        return tuple(self.cls.sensor_size)

    @property
    def has_test_split(self) -> bool:
        """Whether the dataset comes with its own test split."""
        return len(self.splits) == 2

    def split_path(self, root: str | os.PathLike, train: bool) -> Path:
        """Where tonic keeps the given split under ``root``."""
        return Path(root, self.class_name, self.splits[0 if train else -1])

    def is_present(self, root: str | os.PathLike, train: bool) -> bool:
        """Whether the split's files are on disk (at least one sample)."""
        path = self.split_path(root, train)
        if not self.sample_glob:
            return path.is_file()
        return path.is_dir() and next(path.glob(self.sample_glob), None) is not None

    def open(self, root: str | os.PathLike, train: bool, transform: Callable | None, **options):
        """The tonic dataset over the files present under ``root``."""
        dataset = self.cls.__new__(self.cls)
        if self.is_present(root, train):
            # tonic re-downloads unless both the archive and (for NMNIST) all 70k files are there:
            # extracted files that are present are trusted as they are.
            dataset._check_exists = _present
        split = {"train": train} if self.has_test_split else {}
        dataset.__init__(str(root), transform=_with_event_dtype(transform), **split, **options)
        return dataset

    def version(self, dataset: Any) -> str:
        """What identifies the data and its reading code: tonic's version."""
        import tonic

        return f"tonic-{tonic.__version__}"


@dataclass(frozen=True)
class OfflineEntry:
    """A dataset generated on this machine (no download): the import path of its class."""

    import_path: str
    download_size: str = "none (generated offline on first use)"
    has_test_split: bool = True

    @property
    def cls(self) -> type:
        """The dataset class."""
        module, _, name = self.import_path.rpartition(".")
        return getattr(importlib.import_module(module), name)

    @property
    def sensor_size(self) -> SensorSize:
        """(width, height, polarities) of the recordings."""
        return tuple(self.cls.sensor_size)

    def is_present(self, root: str | os.PathLike, train: bool) -> bool:
        """Always: the data is generated when missing."""
        return True

    def open(self, root: str | os.PathLike, train: bool, transform: Callable | None, **options):
        """The dataset, generated under ``root`` first if needed."""
        return self.cls(root=root, train=train, transform=_with_event_dtype(transform), **options)

    def version(self, dataset: Any) -> str:
        """The generated file's name, which carries a hash of the generation parameters."""
        return Path(dataset.path).name


DATASETS: dict[str, TonicEntry | OfflineEntry] = {
    "NDigits": OfflineEntry("eventsnn.data.offline.NDigits"),
    "Vowels": OfflineEntry("eventsnn.data.offline.Vowels"),
    "NMNIST": TonicEntry("NMNIST", ("Train", "Test"), "*/*.bin", "about 1 GB (two zip archives)"),
    "DVSGesture": TonicEntry(
        "DVSGesture", ("ibmGestureTrain", "ibmGestureTest"), "*/*.npy", "about 2.7 GB"
    ),
    "SHD": TonicEntry("SHD", ("shd_train.h5", "shd_test.h5"), "", "about 0.5 GB"),
    "POKERDVS": TonicEntry("POKERDVS", ("pips_train", "pips_test"), "*/*.npy", "about 1 MB"),
    "CIFAR10DVS": TonicEntry("CIFAR10DVS", ("",), "*/*.aedat4", "about 6 GB"),
}
"""Every dataset a recipe can name, by the name tonic gives it."""


def dataset_entry(name: str) -> TonicEntry | OfflineEntry:
    """The registry entry for ``name``, or a `ConfigError` on ``data.dataset`` listing the names."""
    try:
        return DATASETS[name]
    except KeyError:
        known = ", ".join(sorted(DATASETS))
        raise ConfigError("data.dataset", f"unknown dataset {name!r}; known: {known}") from None


def open_dataset(
    name: str,
    root: str | os.PathLike,
    train: bool,
    transform: Callable | None = None,
    download: bool = False,
    **options: Any,
) -> Any:
    """Open the train or test split of dataset ``name`` with ``transform`` applied to its events.

    Missing files are downloaded by tonic only when ``download`` is true; otherwise a
    `ConfigError` names the path looked at and the ``data.download`` key.
    """
    entry = dataset_entry(name)
    if not download and not entry.is_present(root, train):
        where = entry.split_path(root, train) if isinstance(entry, TonicEntry) else root
        raise ConfigError(
            "data.download",
            f"{name} is not under {where}; set `download: true` to fetch it "
            f"({entry.download_size}) or put the extracted files there",
        )
    return entry.open(root, train, transform, **options)


def _present() -> bool:
    """Stands in for a tonic dataset's ``_check_exists`` (a module-level function: picklable)."""
    return True


def _with_event_dtype(transform: Callable | None) -> Callable:
    """``transform`` preceded by the conversion of tonic's event dtypes to the project's."""
    return Pipeline([as_event_array] + ([transform] if transform is not None else []))
