"""Offline datasets: deterministic, cached by parameters, valid items, balanced disjoint splits."""

import pickle

import numpy as np
import pytest
import tonic.transforms

from eventsnn.data.offline import NDigits, ndigits
from eventsnn.events import EVENT_DTYPE, validate

SMALL = {"samples_per_class": 5}  # 4 train + 1 test digit per class


@pytest.fixture(scope="module")
def ndigits_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("datasets")
    NDigits(root, **SMALL)
    return root


def test_stratified_test_mask_takes_every_fifth_of_each_class():
    labels = np.array([0] * 6 + [1] * 5 + [0] * 4)
    mask = ndigits.stratified_test_mask(labels)
    # class 0 ranks 0..9 sit at 0..5 and 11..14: rank 4 at index 4, rank 9 at index 14
    assert np.flatnonzero(mask).tolist() == [4, 10, 14]


def test_saccades_follow_the_triangle():
    times, offsets = ndigits.saccade_offsets(300_000, 25_000)
    assert times[[0, 2, 4, 8, 12]].tolist() == [0, 50_000, 100_000, 200_000, 300_000]
    np.testing.assert_allclose(offsets[[0, 4, 8, 12]], [[3, 0], [6, 6], [0, 6], [3, 0]])
    np.testing.assert_allclose(offsets[2], [4.5, 3.0])  # eased: half way at half time


def test_ndigits_items_are_valid_n_mnist_like_recordings(ndigits_root):
    train, test = NDigits(ndigits_root, **SMALL), NDigits(ndigits_root, train=False, **SMALL)
    assert (len(train), len(test)) == (40, 10)
    assert np.bincount(train.targets).tolist() == [4] * 10
    assert np.bincount(test.targets).tolist() == [1] * 10
    for events, label in [train[0], train[-1], test[3]]:
        assert events.dtype == EVENT_DTYPE
        validate(events, NDigits.sensor_size)
        assert events["t"][0] >= 0 and events["t"][-1] <= 300_000
        assert 1000 < len(events) < 20_000
        assert 0.3 < events["p"].mean() < 0.7
        assert label in range(10)
    with pytest.raises(IndexError):
        train[40]


def test_train_and_test_recordings_are_disjoint(ndigits_root):
    train, test = NDigits(ndigits_root, **SMALL), NDigits(ndigits_root, train=False, **SMALL)
    train_t = {train[i][0]["t"].tobytes() for i in range(len(train))}
    assert not any(test[i][0]["t"].tobytes() in train_t for i in range(len(test)))


def test_generation_is_deterministic():
    params = {"threshold": 0.35, "background": 0.15, "duration_us": 300_000, "frame_us": 2_000}
    a = ndigits.generate_ndigits(samples_per_class=1, noise_rate_hz=5.0, **params)
    b = ndigits.generate_ndigits(samples_per_class=1, noise_rate_hz=5.0, **params)
    assert len(a.recordings) == 10
    for x, y in zip(a.recordings, b.recordings, strict=True):
        np.testing.assert_array_equal(x, y)
    np.testing.assert_array_equal(a.labels, b.labels)


def test_cache_is_reused_and_keyed_by_parameters(ndigits_root, monkeypatch):
    calls = []
    generate = ndigits.generate_ndigits

    def counting_generate(**params):
        calls.append(params)
        return generate(**params)

    monkeypatch.setattr(ndigits, "generate_ndigits", counting_generate)
    cached = NDigits(ndigits_root, **SMALL)
    assert calls == []
    changed = NDigits(ndigits_root, samples_per_class=1, threshold=0.5)
    assert len(calls) == 1 and calls[0]["threshold"] == 0.5
    assert changed.path != cached.path and len(changed) == 10
    NDigits(ndigits_root, samples_per_class=1, threshold=0.5)
    assert len(calls) == 1


def test_tonic_transforms_apply(ndigits_root):
    to_frame = tonic.transforms.ToFrame(
        sensor_size=NDigits.sensor_size, time_window=100_000, include_incomplete=True
    )
    plain = NDigits(ndigits_root, **SMALL)
    framed = NDigits(ndigits_root, transform=to_frame, target_transform=lambda y: y + 100, **SMALL)
    frames, target = framed[7]
    events, label = plain[7]
    assert frames.shape[1:] == (2, 34, 34)
    assert frames.sum() == len(events)
    assert frames[:, 1].sum() == events["p"].sum()
    assert target == label + 100


def test_dataset_pickles_and_reads_in_worker_processes(ndigits_root):
    torch = pytest.importorskip("torch")
    dataset = NDigits(ndigits_root, train=False, transform=len, **SMALL)
    dataset[0]  # opens the file in this process; the handle must not travel
    clone = pickle.loads(pickle.dumps(dataset))
    assert clone[0] == dataset[0]
    loader = torch.utils.data.DataLoader(dataset, batch_size=5, num_workers=2)
    counts = torch.cat([batch for batch, _ in loader]).tolist()
    assert counts == [dataset[i][0] for i in range(len(dataset))]
