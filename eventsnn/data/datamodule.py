"""`EventDataModule`: any registered dataset, encoded, cached, split and batched time-first."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
from torch.utils.data import DataLoader, Dataset, Subset

from eventsnn.data.cache import DiskCachedDataset, cache_key, describe
from eventsnn.data.collate import pad_time_first
from eventsnn.data.errors import ConfigError
from eventsnn.data.pipeline import Pipeline
from eventsnn.data.registry import dataset_entry, open_dataset


def split_indices(n: int, fractions: Sequence[float], seed: int) -> list[np.ndarray]:
    """Shuffle ``range(n)`` with ``seed`` and cut off one part per fraction; the rest comes last."""
    order = np.random.default_rng(seed).permutation(n)
    parts, start = [], 0
    for fraction in fractions:
        size = round(n * fraction)
        parts.append(np.sort(order[start : start + size]))
        start += size
    parts.append(np.sort(order[start:]))
    return parts


def first_sensor_size_mismatch(
    transforms: Sequence[Callable], sensor_size: tuple[int, ...]
) -> tuple[int, tuple[int, ...]] | None:
    """Index and size of the first transform declaring a ``sensor_size`` other than the data's.

    Only the first transform that declares one sees the dataset's events as they are (a later one
    may follow a crop or downsampling), so only that one is compared.
    """
    for i, transform in enumerate(transforms):
        declared = getattr(transform, "sensor_size", None)
        if declared is not None:
            declared = tuple(int(s) for s in declared)
            return None if declared == tuple(sensor_size) else (i, declared)
    return None


class EventDataModule(pl.LightningDataModule):
    """Train, validation and test loaders over a dataset named in the recipe.

    ``transform`` (a list of tonic-compatible callables, e.g. ``ToFrame``) encodes each sample's
    events into a tensor ``(T, ...)``; its results are cached on disk under ``root/cache`` with a
    key over the dataset, its version, the split and every transform parameter. ``augment`` runs
    on the training split only, on the events before ``transform`` (that split is then not cached,
    since its samples change each epoch). Batches are ``(T, B, ...)`` float tensors, zero-padded
    in time, and ``(B,)`` labels. The validation set is a seeded fraction of the training split; a
    dataset without a test split gives up a seeded ``test_fraction`` as well.
    ``max_samples`` keeps only the first samples of each split (quick runs and tests).
    """

    def __init__(
        self,
        dataset: str = "NDigits",
        root: str = "datasets",
        download: bool = False,
        transform: list[Callable] | None = None,
        augment: list[Callable] | None = None,
        dataset_options: dict[str, Any] | None = None,
        val_fraction: float = 0.1,
        test_fraction: float = 0.2,
        split_seed: int = 0,
        batch_size: int = 32,
        num_workers: int = 0,
        cache: bool = True,
        max_samples: int | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.entry = dataset_entry(dataset)
        self.transform = list(transform or [])
        self.augment = list(augment or [])
        self.options = dict(dataset_options or {})
        mismatch = first_sensor_size_mismatch(self.augment + self.transform, self.entry.sensor_size)
        if mismatch is not None:
            index, declared = mismatch
            key = (
                f"data.augment[{index}]"
                if index < len(self.augment)
                else (f"data.transform[{index - len(self.augment)}]")
            )
            raise ConfigError(
                f"{key}.sensor_size",
                f"{declared} does not match {dataset}'s sensor size {self.entry.sensor_size}",
            )
        self.splits: dict[str, Dataset] = {}
        self.classes: Sequence[Any] = ()

    @property
    def sensor_size(self) -> tuple[int, ...]:
        """(width, height, polarities) of the dataset's recordings."""
        return self.entry.sensor_size

    @property
    def num_classes(self) -> int:
        """Number of classes of the dataset (known after `setup`)."""
        return len(self.classes)

    def prepare_data(self) -> None:
        """Download (when asked) or check the data, once, before any process reads it."""
        for train in (True, False) if self.entry.has_test_split else (True,):
            self._open(train, self.transform)

    def setup(self, stage: str | None = None) -> None:
        """Open and split the data for ``stage`` (fit, validate, test or predict); idempotent."""
        hp = self.hparams
        wanted = {"fit": ("train", "val"), "validate": ("val",)}.get(stage or "", ("test",))
        if all(name in self.splits for name in wanted):
            return
        train_set = self._encoded(True)
        self.classes = getattr(train_set, "classes", ())
        if self.entry.has_test_split:
            val, train = split_indices(len(train_set), [hp.val_fraction], hp.split_seed)
            test_set, test = self._encoded(False), None
        else:
            test, val, train = split_indices(
                len(train_set), [hp.test_fraction, hp.val_fraction], hp.split_seed
            )
            test_set = train_set
        augmented = self._open(True, self.augment + self.transform) if self.augment else train_set
        self.splits = {
            "train": self._limited(augmented, train),
            "val": self._limited(train_set, val),
            "test": self._limited(test_set, test),
        }

    def sample_shape(self) -> tuple[int, ...]:
        """Shape ``(T, ...)`` of the first encoded sample (sets up the data when needed)."""
        if not self.splits:
            self.setup("fit")
        split = self.splits["train"] if len(self.splits["train"]) else self.splits["test"]
        return tuple(np.shape(split[0][0]))

    def train_dataloader(self) -> DataLoader:
        """Shuffled batches of the training split."""
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        """Batches of the validation split."""
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        """Batches of the test split."""
        return self._loader("test")

    def predict_dataloader(self) -> DataLoader:
        """Batches of the test split, for ``predict``."""
        return self._loader("test")

    def _open(self, train: bool, transforms: list[Callable]) -> Any:
        """One split of the dataset with ``transforms`` composed over its events."""
        hp = self.hparams
        return open_dataset(
            hp.dataset, hp.root, train, Pipeline(transforms), hp.download, **self.options
        )

    def _encoded(self, train: bool) -> Any:
        """One split, encoded by ``transform`` and, unless ``cache`` is off, cached on disk."""
        hp = self.hparams
        dataset = self._open(train, self.transform)
        if not hp.cache:
            return dataset
        split = "train" if train else "test"
        description = {
            "dataset": hp.dataset,
            "version": self.entry.version(dataset),
            "split": split,
            "length": len(dataset),  # files added later shift the indices: a new cache
            "options": describe(self.options),
            "transform": describe(self.transform),
        }
        folder = Path(hp.root, "cache", hp.dataset, f"{split}-{cache_key(description)}")
        cached = DiskCachedDataset(dataset, folder, description)
        cached.classes = getattr(dataset, "classes", ())
        return cached

    def _limited(self, dataset: Any, indices: np.ndarray | None) -> Dataset:
        """The samples of ``dataset`` at ``indices`` (all if None), at most ``max_samples``."""
        if indices is None:
            indices = np.arange(len(dataset))
        if self.hparams.max_samples is not None:
            indices = indices[: self.hparams.max_samples]
        return Subset(dataset, indices.tolist())

    def _loader(self, split: str, shuffle: bool = False) -> DataLoader:
        """A loader over one split, batched time-first."""
        workers = self.hparams.num_workers
        return DataLoader(
            self.splits[split],
            batch_size=self.hparams.batch_size,
            shuffle=shuffle,
            num_workers=workers,
            collate_fn=pad_time_first,
            persistent_workers=workers > 0,
        )
