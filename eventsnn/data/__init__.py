"""LightningDataModules over tonic datasets and the offline datasets."""

from eventsnn.data.cache import DiskCachedDataset, cache_key, describe
from eventsnn.data.collate import pad_time_first
from eventsnn.data.datamodule import EventDataModule, split_indices
from eventsnn.data.errors import ConfigError
from eventsnn.data.pipeline import Pipeline
from eventsnn.data.registry import DATASETS, as_event_array, dataset_entry, open_dataset

__all__ = [
    "DATASETS",
    "ConfigError",
    "DiskCachedDataset",
    "EventDataModule",
    "Pipeline",
    "as_event_array",
    "cache_key",
    "dataset_entry",
    "describe",
    "open_dataset",
    "pad_time_first",
    "split_indices",
]
