"""Data layer: collate padding, cache keys, tonic-backed datasets from fixture files, errors."""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

import numpy as np
import pytest
import tonic.transforms as tonic_transforms
import torch
from fixtures.datasets.layouts import write_dvsgesture, write_nmnist, write_pokerdvs, write_shd

from eventsnn.data.cache import DiskCachedDataset, cache_key, describe
from eventsnn.data.collate import pad_time_first
from eventsnn.data.datamodule import EventDataModule, split_indices
from eventsnn.data.errors import ConfigError
from eventsnn.data.registry import as_event_array, open_dataset
from eventsnn.events.core import EVENT_DTYPE


def test_pad_time_first_pads_shorter_samples_with_zeros_at_the_end():
    a = np.ones((3, 2, 4, 4), dtype=np.int16)
    b = torch.full((1, 2, 4, 4), 2.0)
    x, y = pad_time_first([(a, 5), (b, np.int64(7))])
    assert x.shape == (3, 2, 2, 4, 4) and x.dtype == torch.float32
    assert torch.equal(x[:, 0], torch.ones(3, 2, 4, 4))
    assert torch.equal(x[0, 1], torch.full((2, 4, 4), 2.0))
    assert x[1:, 1].abs().sum() == 0
    assert y.tolist() == [5, 7] and y.dtype == torch.long


def test_pad_time_first_refuses_samples_that_differ_beyond_time():
    with pytest.raises(ValueError, match=r"differ in shape beyond time"):
        pad_time_first([(np.zeros((2, 3)), 0), (np.zeros((2, 4)), 1)])


def test_cache_key_changes_with_every_transform_parameter():
    frames = tonic_transforms.ToFrame(sensor_size=(34, 34, 2), n_time_bins=10)
    same = tonic_transforms.ToFrame(sensor_size=(34, 34, 2), n_time_bins=10)
    assert cache_key(describe([frames])) == cache_key(describe([same]))
    for change in ({"n_time_bins": 11}, {"sensor_size": (32, 32, 2)}, {"include_incomplete": True}):
        other = dataclasses.replace(frames, **change)
        assert cache_key(describe([other])) != cache_key(describe([frames])), change
    denoise = tonic_transforms.Denoise(filter_time=1000)
    assert cache_key(describe([denoise, frames])) != cache_key(describe([frames]))
    assert describe(np.arange(3)) != describe(np.arange(1, 4))
    as_parsed = dataclasses.replace(frames, overlap=0.0, sensor_size=[34, 34, 2])
    assert cache_key(describe([as_parsed])) == cache_key(describe([frames]))


def scaler(factor: float):
    return lambda events: events * factor


def test_cache_key_tells_functions_apart_by_what_they_do():
    def key(fn) -> str:
        return cache_key(describe([fn]))

    assert key(lambda e: e[::2]) != key(lambda e: e[::3])  # same qualified name, other code
    assert key(scaler(2.0)) != key(scaler(3.0))  # same code, other closure
    assert key(scaler(2.0)) == key(scaler(2.0))
    assert key(np.flip) == key(np.flip) != key(np.sort)
    assert key(functools.partial(np.clip, a_min=0)) != key(functools.partial(np.clip, a_min=1))


def test_disk_cache_computes_once_then_reads_from_disk(tmp_path: Path):
    calls = []

    class Counting:
        def __len__(self):
            return 2

        def __getitem__(self, i):
            calls.append(i)
            return np.full((2, 3), i, dtype=np.float32), i + 10

    cached = DiskCachedDataset(Counting(), tmp_path / "c", {"what": "test"})
    first = [cached[i] for i in range(2)]
    again = [cached[i] for i in range(2)]
    assert calls == [0, 1]
    for (a, la), (b, lb) in zip(first, again, strict=True):
        assert np.array_equal(a, b) and int(la) == int(lb)
    assert int(again[1][1]) == 11 and sorted(p.name for p in (tmp_path / "c").iterdir()) == [
        "0.npz",
        "1.npz",
        "key.json",
    ]


def test_split_indices_is_a_seeded_partition():
    test, val, train = split_indices(100, [0.2, 0.1], seed=3)
    assert (len(test), len(val), len(train)) == (20, 10, 70)
    assert sorted(np.concatenate([test, val, train]).tolist()) == list(range(100))
    assert np.array_equal(split_indices(100, [0.2, 0.1], seed=3)[0], test)
    assert not np.array_equal(split_indices(100, [0.2, 0.1], seed=4)[0], test)


def test_as_event_array_converts_tonic_dtypes():
    shd = np.zeros(2, dtype=[("t", int), ("x", int), ("p", int)])
    shd["t"], shd["x"] = [5, 9], [3, 699]
    events = as_event_array(shd)
    assert events.dtype == EVENT_DTYPE
    assert events["x"].tolist() == [3, 699] and events["y"].tolist() == [0, 0]
    assert events["t"].tolist() == [5, 9] and events["p"].tolist() == [False, False]


@pytest.mark.parametrize(
    ("name", "write", "sensor_size", "n_classes"),
    [
        ("NMNIST", write_nmnist, (34, 34, 2), 10),
        ("DVSGesture", write_dvsgesture, (128, 128, 2), 11),
        ("SHD", write_shd, (700, 1, 1), 20),
        ("POKERDVS", write_pokerdvs, (35, 35, 2), 4),
    ],
)
def test_tonic_datasets_read_fixture_files_in_their_original_layout(
    tmp_path: Path, name, write, sensor_size, n_classes
):
    write(tmp_path)
    frames = tonic_transforms.ToFrame(sensor_size=sensor_size, n_time_bins=4)
    dm = EventDataModule(dataset=name, root=str(tmp_path), transform=[frames], batch_size=3)
    dm.prepare_data()
    dm.setup("fit")
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape[:2] == (4, 3) and x.shape[2:] == dm.sample_shape()[1:]
    assert dm.num_classes == n_classes and y.max() < n_classes
    # events come back as written: all 300, time-sorted, x in the band the fixture gave the label
    dataset = open_dataset(name, tmp_path, train=False)
    for index in (0, len(dataset) - 1):
        events, label = dataset[index]
        band = sensor_size[0] // n_classes
        assert events.dtype == EVENT_DTYPE and len(events) == 300
        assert np.all(np.diff(events["t"]) >= 0)
        assert np.all(events["x"] // band == label)


def test_cached_frames_equal_fresh_ones_and_a_changed_transform_gets_a_new_folder(tmp_path):
    write_nmnist(tmp_path)

    def module(n_time_bins):
        frames = tonic_transforms.ToFrame(sensor_size=(34, 34, 2), n_time_bins=n_time_bins)
        dm = EventDataModule(dataset="NMNIST", root=str(tmp_path), transform=[frames])
        dm.setup("test")
        return dm

    cached = module(4).splits["test"][0][0]
    again = module(4).splits["test"][0][0]
    assert np.array_equal(cached, again)
    other = module(5).splits["test"][0][0]
    assert other.shape[0] == 5
    folders = sorted(p.name.split("-")[0] for p in (tmp_path / "cache" / "NMNIST").iterdir())
    assert folders == ["test", "test", "train", "train"]


def test_augment_applies_to_the_training_split_only(tmp_path: Path):
    write_pokerdvs(tmp_path)
    drop_all = tonic_transforms.DropEvent(p=1.0)
    frames = tonic_transforms.ToFrame(sensor_size=(35, 35, 2), n_time_bins=2)
    dm = EventDataModule(
        dataset="POKERDVS", root=str(tmp_path), transform=[frames], augment=[drop_all]
    )
    dm.setup("fit")
    dm.setup("test")
    assert all(dm.splits["train"][i][0].sum() == 0 for i in range(len(dm.splits["train"])))
    assert all(dm.splits[s][0][0].sum() > 0 for s in ("val", "test"))


def test_unknown_dataset_names_the_key_and_lists_the_known_ones():
    with pytest.raises(ConfigError, match=r"^data\.dataset: unknown dataset 'NMIST'.*NMNIST"):
        EventDataModule(dataset="NMIST")


def test_missing_dataset_without_download_names_the_key_and_path(tmp_path: Path):
    dm = EventDataModule(dataset="SHD", root=str(tmp_path))
    with pytest.raises(ConfigError, match=r"^data\.download: SHD is not under .*shd_train\.h5"):
        dm.prepare_data()


def test_transform_for_another_sensor_size_names_the_transform():
    frames = tonic_transforms.ToFrame(sensor_size=(128, 128, 2), n_time_bins=4)
    with pytest.raises(ConfigError, match=r"^data\.transform\[0\]\.sensor_size: \(128, 128, 2\)"):
        EventDataModule(dataset="NMNIST", transform=[frames])
