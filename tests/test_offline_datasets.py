"""Offline datasets: deterministic, cached by parameters, valid items, balanced disjoint splits."""

import pickle

import numpy as np
import pytest
import tonic.transforms
from scipy import signal

from eventsnn.data.offline import NDigits, Vowels, cochlea, ndigits, vowels
from eventsnn.data.offline.cache import stratified_test_mask
from eventsnn.events import EVENT_DTYPE, validate

# 5 recordings per class: 4 train + 1 test each
DATASETS = {
    NDigits: (ndigits, "generate_ndigits", {"samples_per_class": 5}),
    Vowels: (vowels, "generate_vowels", {"samples_per_class": 5}),
}


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("datasets")


def small(cls, root, **kwargs):
    return cls(root, **DATASETS[cls][2], **kwargs)


def test_stratified_test_mask_takes_every_fifth_of_each_class():
    labels = np.array([0] * 6 + [1] * 5 + [0] * 4)
    # class 0 ranks 0..9 sit at 0..5 and 11..14: rank 4 at index 4, rank 9 at index 14
    assert np.flatnonzero(stratified_test_mask(labels)).tolist() == [4, 10, 14]


def test_saccades_follow_the_triangle():
    times, offsets = ndigits.saccade_offsets(300_000, 25_000)
    assert times[[0, 2, 4, 8, 12]].tolist() == [0, 50_000, 100_000, 200_000, 300_000]
    np.testing.assert_allclose(offsets[[0, 4, 8, 12]], [[3, 0], [6, 6], [0, 6], [3, 0]])
    np.testing.assert_allclose(offsets[2], [4.5, 3.0])  # eased: half way at half time


@pytest.mark.parametrize("cls", DATASETS)
def test_items_are_valid_and_classes_balanced(cls, root):
    train, test = small(cls, root), small(cls, root, train=False)
    assert (len(train), len(test)) == (40, 10)
    assert np.bincount(train.targets).tolist() == [4] * 10
    assert np.bincount(test.targets).tolist() == [1] * 10
    assert len(cls.classes) == 10
    for events, label in [train[0], train[-1], test[3]]:
        assert events.dtype == EVENT_DTYPE
        validate(events, cls.sensor_size)
        assert events["t"][0] >= 0 and events["t"][-1] <= 500_000
        assert 500 < len(events) < 20_000
        assert label in range(10)
    with pytest.raises(IndexError):
        train[40]


def test_ndigits_has_both_polarities(root):
    events, _ = small(NDigits, root)[5]
    assert 0.3 < events["p"].mean() < 0.7


def test_vowels_are_audio_events(root):
    events, _ = small(Vowels, root)[5]
    assert (events["y"] == 0).all() and events["p"].all()
    assert len(np.unique(events["x"])) > 10


@pytest.mark.parametrize("cls", DATASETS)
def test_train_and_test_recordings_are_disjoint(cls, root):
    train, test = small(cls, root), small(cls, root, train=False)
    train_t = {train[i][0].tobytes() for i in range(len(train))}
    assert not any(test[i][0].tobytes() in train_t for i in range(len(test)))


@pytest.mark.parametrize(
    ("generate", "kwargs"),
    [
        (
            ndigits.generate_ndigits,
            {"samples_per_class": 1, "threshold": 0.35, "background": 0.15}
            | {"duration_us": 300_000, "frame_us": 2_000, "noise_rate_hz": 5.0},
        ),
        (vowels.generate_vowels, {"samples_per_class": 1, "seed": 0} | {"snr_db": (5, 25)}),
    ],
)
def test_generation_is_deterministic(generate, kwargs):
    if generate is vowels.generate_vowels:
        kwargs = kwargs | {"lif_gain": 1500.0}
    a, b = generate(**kwargs), generate(**kwargs)
    assert len(a.recordings) == 10
    for x, y in zip(a.recordings, b.recordings, strict=True):
        np.testing.assert_array_equal(x, y)
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(a.train, b.train)


@pytest.mark.parametrize("cls", DATASETS)
def test_cache_is_reused_and_keyed_by_parameters(cls, root, monkeypatch):
    module, name, _ = DATASETS[cls]
    generate = getattr(module, name)
    calls = []

    def counting_generate(*args, **kwargs):
        calls.append((args, kwargs))
        return generate(*args, **kwargs)

    monkeypatch.setattr(module, name, counting_generate)
    cached = small(cls, root)
    assert calls == []
    changed = cls(root, samples_per_class=1, **{"seed": 1} if cls is Vowels else {"threshold": 0.5})
    assert len(calls) == 1
    assert changed.path != cached.path and len(changed) == 10
    cls(root, samples_per_class=1, **{"seed": 1} if cls is Vowels else {"threshold": 0.5})
    assert len(calls) == 1


@pytest.mark.parametrize("cls", DATASETS)
def test_tonic_transforms_apply(cls, root):
    to_frame = tonic.transforms.ToFrame(
        sensor_size=cls.sensor_size, time_window=100_000, include_incomplete=True
    )
    plain = small(cls, root)
    framed = small(cls, root, transform=to_frame, target_transform=lambda y: y + 100)
    frames, target = framed[7]
    events, label = plain[7]
    assert frames.sum() == len(events)
    assert target == label + 100
    if cls is NDigits:
        assert frames.shape[1:] == (2, 34, 34)
        assert frames[:, 1].sum() == events["p"].sum()
    else:
        assert frames.shape[1:] == (1, 1, 64)
        per_channel = frames.sum(axis=(0, 1, 2))
        np.testing.assert_array_equal(per_channel, np.bincount(events["x"], minlength=64))


def test_dataset_pickles_and_reads_in_worker_processes(root):
    torch = pytest.importorskip("torch")
    dataset = small(NDigits, root, train=False, transform=len)
    dataset[0]  # opens the file in this process; the handle must not travel
    clone = pickle.loads(pickle.dumps(dataset))
    assert clone[0] == dataset[0]
    loader = torch.utils.data.DataLoader(dataset, batch_size=5, num_workers=2)
    counts = torch.cat([batch for batch, _ in loader]).tolist()
    assert counts == [dataset[i][0] for i in range(len(dataset))]


def test_erb_space_is_even_in_erb_rate():
    centres = cochlea.erb_space(100.0, 6000.0, 5)
    np.testing.assert_allclose(centres[[0, -1]], [100.0, 6000.0])
    rate = 21.4 * np.log10(1 + 0.00437 * centres)
    np.testing.assert_allclose(np.diff(rate), np.diff(rate)[0])


def test_filterbank_matches_scipy_lfilter():
    ear = cochlea.Cochlea(16_000, (150.0, 1000.0, 4000.0), gain=1.0)
    sound = np.random.default_rng(0).normal(size=2000)
    expected = [
        signal.lfilter(*signal.gammatone(f, "iir", fs=16_000), sound) for f in ear.centres_hz
    ]
    np.testing.assert_allclose(ear.motion(sound), expected, rtol=1e-9, atol=1e-12)


def test_hair_cell_lif_hand_computed():
    # no leak, 0.25 per sample: v reaches 1 at samples 3 and 7; negative motion adds nothing
    motion = np.array([[1.0] * 8, [-1.0] * 8])
    channels, steps = cochlea._hair_cell_lif(motion, 0.3, 1.0, 0.25, 1.0)
    assert channels.tolist() == [0, 0] and steps.tolist() == [3, 7]
    # leak 0.5, 0.6 per sample: .6, .9, 1.05 (spike, .05), .625, .9125, 1.05625 (spike)
    channels, steps = cochlea._hair_cell_lif(np.ones((1, 6)), 0.3, 0.5, 0.6, 1.0)
    assert steps.tolist() == [2, 5]


def test_cochlea_is_tonotopic():
    ear = cochlea.Cochlea(16_000, tuple(cochlea.erb_space(100.0, 6000.0, 64)), gain=1500.0)
    t = np.arange(4000) / 16_000
    tone = np.sin(2 * np.pi * ear.centres_hz[40] * t)
    events = ear(tone)
    validate(events, (64, 1, 1))
    assert abs(int(np.argmax(np.bincount(events["x"], minlength=64))) - 40) <= 1
    assert len(ear(np.zeros(4000))) == 0


@pytest.mark.slow
def test_full_datasets_are_learnable_from_event_counts(tmp_path):
    """Full generation; fast classifiers on count features must reach what the SNN recipes need."""
    from sklearn.linear_model import RidgeClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    def counts(dataset, bins, t_max):
        rows = []
        for events, _ in dataset:
            b = np.minimum(events["t"] * bins // t_max, bins - 1)
            width, height, pols = dataset.sensor_size
            polarity = events["p"] if pols == 2 else 0
            flat = ((b * pols + polarity) * height + events["y"]) * width + events["x"]
            rows.append(np.bincount(flat, minlength=bins * width * height * pols))
        return np.log1p(np.array(rows, dtype=float))

    cases = [
        (NDigits, 3, 300_001, RidgeClassifier(alpha=10.0), 0.97),
        (Vowels, 1, 500_001, make_pipeline(StandardScaler(), SVC(C=10.0)), 0.93),
    ]
    for cls, bins, t_max, classifier, least in cases:
        train, test = cls(tmp_path), cls(tmp_path, train=False)
        assert np.bincount(train.targets).min() >= 0.95 * np.bincount(train.targets).max()
        classifier.fit(counts(train, bins, t_max), train.targets)
        assert classifier.score(counts(test, bins, t_max), test.targets) >= least
