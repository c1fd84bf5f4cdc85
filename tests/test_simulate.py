"""The event-camera simulator: hand-computed ramps, polarity, refractory, noise, validation."""

import numpy as np
import pytest

from eventsnn.events import EVENT_DTYPE, EventsError, validate
from eventsnn.events.simulate import simulate


def ramp_frames(log_values, shape=(1, 1)):
    """Frames whose log intensity (eps=0) takes the given values at every pixel."""
    return np.exp(np.asarray(log_values, dtype=np.float64))[:, None, None] * np.ones(shape)


def test_linear_ramp_gives_hand_computed_events():
    # log intensity rises 0 -> 0.9 over 900 µs: crossings of 0.2, 0.4, 0.6, 0.8 at 200..800 µs
    events = simulate(ramp_frames([0.0, 0.9]), [0, 900], threshold=0.2, eps=0.0)
    assert events.dtype == EVENT_DTYPE
    assert events["t"].tolist() == [200, 400, 600, 800]
    assert events["p"].all()
    assert (events["x"] == 0).all() and (events["y"] == 0).all()


def test_ramp_across_frames_carries_the_reference():
    # 0 -> 0.3 over 300 µs crosses 0.2 at 200 µs; 0.3 -> 0.5 over 200 µs crosses 0.4 at 400 µs
    events = simulate(ramp_frames([0.0, 0.3, 0.5]), [0, 300, 500], threshold=0.2, eps=0.0)
    assert events["t"].tolist() == [200, 400]


def test_off_events_and_asymmetric_thresholds():
    # falls 0 -> -1 over 1000 µs with off threshold 0.3: at -0.3, -0.6, -0.9 -> 300, 600, 900 µs
    events = simulate(ramp_frames([0.0, -1.0]), [0, 1000], threshold=(0.1, 0.3), eps=0.0)
    assert events["t"].tolist() == [300, 600, 900]
    assert not events["p"].any()
    # back up to -0.45: the reference is -0.9, so ON at -0.8, -0.7, -0.6, -0.5
    events = simulate(ramp_frames([0.0, -1.0, -0.45]), [0, 1000, 1550], threshold=(0.1, 0.3), eps=0)
    on = events[events["p"]]
    assert on["t"].tolist() == [1200, 1300, 1400, 1500]


def test_pixels_are_independent_and_output_sorted():
    frames = np.ones((2, 2, 3))
    frames[1, 1, 2] = np.exp(0.5)  # only pixel x=2, y=1 changes: two ON events
    frames[1, 0, 0] = np.exp(-0.25)  # x=0, y=0: one OFF event at 0.2/0.25 of the interval
    events = simulate(frames, [0, 1000], threshold=0.2, eps=0.0)
    validate(events, (3, 2, 2))
    assert [(e["x"], e["y"], e["t"], bool(e["p"])) for e in events] == [
        (2, 1, 400, True),
        (0, 0, 800, False),
        (2, 1, 800, True),
    ]


def test_refractory_drops_close_events():
    # crossings 200 µs apart; a 250 µs refractory keeps every other one
    frames = ramp_frames([0.0, 1.05])
    all_events = simulate(frames, [0, 1050], threshold=0.2, eps=0.0)
    assert all_events["t"].tolist() == [200, 400, 600, 800, 1000]
    kept = simulate(frames, [0, 1050], threshold=0.2, eps=0.0, refractory_us=250)
    assert kept["t"].tolist() == [200, 600, 1000]
    assert np.all(np.diff(kept["t"]) >= 250)


def test_noise_is_seeded_and_has_the_requested_rate():
    frames = np.ones((2, 10, 10))
    a = simulate(frames, [0, 1_000_000], noise_rate_hz=5.0, seed=3)
    b = simulate(frames, [0, 1_000_000], noise_rate_hz=5.0, seed=3)
    c = simulate(frames, [0, 1_000_000], noise_rate_hz=5.0, seed=4)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert 400 < len(a) < 600  # Poisson(500)
    validate(a, (10, 10, 2))
    assert 0.35 < a["p"].mean() < 0.65


@pytest.mark.parametrize(
    ("frames", "timestamps", "kwargs", "message"),
    [
        (np.ones((3, 4)), [0, 1, 2], {}, "frames"),
        (np.ones((2, 2, 2)), [0, 1, 2], {}, "timestamps"),
        (np.ones((2, 2, 2)), [5, 5], {}, "timestamps"),
        (np.full((2, 2, 2), np.nan), [0, 1], {}, "frames"),
        (-np.ones((2, 2, 2)), [0, 1], {}, "frames"),
        (np.ones((2, 2, 2)), [0, 1], {"threshold": 0.0}, "threshold"),
        (np.ones((2, 2, 2)), [0, 1], {"threshold": (0.1, 0.2, 0.3)}, "threshold"),
        (np.ones((2, 2, 2)), [0, 1], {"refractory_us": -1}, "refractory_us"),
        (np.ones((2, 2, 2)), [0, 1], {"noise_rate_hz": -1}, "noise_rate_hz"),
    ],
)
def test_bad_input_raises_naming_the_argument(frames, timestamps, kwargs, message):
    with pytest.raises(EventsError, match=message):
        simulate(frames, timestamps, **kwargs)
