"""Event inputs shared by the encoding tests, and the boundary that converts tonic's dtypes."""

import numpy as np
import pytest

from eventsnn.encoding._boundary import event_array, from_tonic_layout
from eventsnn.events import EVENT_DTYPE, EventsError, make_events

LAYOUTS = {"nmnist": (34, 34, 2), "davis": (128, 128, 2), "shd": (700, 1, 1)}
"""Real sensor layouts: N-MNIST, a 128x128 DVS, SHD's 700-channel cochlea."""


def random_events(n: int, sensor_size, seed: int = 0, duration: int = 1_000_000) -> np.ndarray:
    """n sorted events uniformly over the sensor and [0, duration) us, with repeated times."""
    rng = np.random.default_rng(seed)
    w, h, p = sensor_size
    return make_events(
        rng.integers(0, w, n),
        rng.integers(0, h, n),
        np.sort(rng.integers(0, duration, n)),
        rng.integers(0, 2, n) if p > 1 else np.ones(n),
    )


def tonic_dataset_layout(events: np.ndarray, audio: bool = False) -> np.ndarray:
    """The same events in the int64 dtype of tonic's NMNIST (or SHD without y when audio)."""
    names = ("t", "x", "p") if audio else ("x", "y", "t", "p")
    out = np.zeros(len(events), np.dtype([(n, np.int64) for n in names]))
    for name in names:
        out[name] = events[name]
    return out


def test_from_tonic_layout_round_trips_int64_and_audio_layouts():
    ev = random_events(50, (34, 34, 2))
    np.testing.assert_array_equal(from_tonic_layout(tonic_dataset_layout(ev)), ev)
    audio = random_events(50, (700, 1, 1))
    np.testing.assert_array_equal(from_tonic_layout(tonic_dataset_layout(audio, True)), audio)


def test_from_tonic_layout_names_missing_fields_and_overflow():
    with pytest.raises(EventsError, match="fields x, t, p"):
        from_tonic_layout(np.zeros(3, [("x", int), ("t", int)]))
    big = np.zeros(1, [("x", int), ("y", int), ("t", int), ("p", int)])
    big["x"] = 40_000
    with pytest.raises(EventsError, match="'x' does not fit int16"):
        from_tonic_layout(big)


def test_event_array_accepts_reordered_fields_and_rejects_other_types():
    ev = random_events(10, (34, 34, 2))
    reordered = np.zeros(10, [("t", "<i8"), ("x", "<i2"), ("y", "<i2"), ("p", "?")])
    for name in "xytp":
        reordered[name] = ev[name]
    out = event_array(reordered)
    assert out.dtype == EVENT_DTYPE
    np.testing.assert_array_equal(out, ev)
    with pytest.raises(EventsError, match="'x' has dtype int64"):
        event_array(tonic_dataset_layout(ev))
    with pytest.raises(EventsError, match="structured numpy array"):
        event_array(np.zeros((3, 4)))
