"""The incremental binner equals tonic's ToFrame on the whole recording, for any chunking."""

from __future__ import annotations

import numpy as np
import pytest
from tonic.functional import to_frame_numpy

from eventsnn.events import make_events
from eventsnn.streaming import binning
from eventsnn.streaming.binning import StepBinner

SENSOR = (34, 34, 2)
STEP_US = 1000


def recording(n: int = 6000, seed: int = 1) -> np.ndarray:
    """Bursty events with a silent gap of 40 ms, starting at an odd time."""
    rng = np.random.default_rng(seed)
    t = np.sort(rng.integers(0, 250_000, n))
    t = t[(t < 100_000) | (t > 140_000)] + 123_457
    n = len(t)
    return make_events(rng.integers(0, 34, n), rng.integers(0, 34, n), t, rng.integers(0, 2, n))


def chunks_of(events: np.ndarray, how: str, rng: np.random.Generator) -> list[np.ndarray]:
    if how == "1 event":
        return [events[i : i + 1] for i in range(len(events))]
    if how == "1 packet":
        return [events[i : i + 100] for i in range(0, len(events), 100)]
    if how == "random":
        cuts = np.sort(rng.choice(np.arange(1, len(events)), 300, replace=False))
        return np.split(events, cuts)
    duration = {"1 ms": 1000, "100 ms": 100_000}[how]
    slot = (events["t"] - events["t"][0]) // duration
    return np.split(events, np.flatnonzero(np.diff(slot)) + 1)


def stream(binner: StepBinner, chunks: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """Push chunks, popping a random number of ready steps in between, and collect the frames."""
    out = []
    for i, chunk in enumerate(chunks):
        binner.push(chunk, arrival_ns=i)
        out.append(binner.pop(max_steps=int(rng.integers(0, 4))).frames)
        assert binner.ready >= 0
    out.append(binner.pop().frames)
    return np.concatenate(out)


@pytest.fixture(params=["dense", "sparse"])
def path(request, monkeypatch):
    """Both binning paths: one buffer per chunk, and per present step (long silences)."""
    if request.param == "sparse":
        monkeypatch.setattr(binning, "DENSE_LIMIT", 0)
    return request.param


@pytest.mark.parametrize("how", ["1 event", "1 packet", "1 ms", "100 ms", "random"])
def test_any_chunking_equals_tonic_to_frame(how, path):
    events = recording()
    rng = np.random.default_rng(0)
    binner = StepBinner(SENSOR, STEP_US)
    frames = stream(binner, chunks_of(events, how, rng), rng)
    expected = to_frame_numpy(events.copy(), SENSOR, time_window=STEP_US)
    assert frames.shape == expected.shape
    np.testing.assert_array_equal(frames, expected.astype(np.float32))
    assert binner.late_events == binner.out_of_sensor_events == 0


def test_flush_adds_the_last_incomplete_step_as_tonic_include_incomplete():
    events = recording()
    binner = StepBinner(SENSOR, STEP_US)
    binner.push(events)
    binner.flush()
    frames = binner.pop().frames
    expected = to_frame_numpy(events.copy(), SENSOR, time_window=STEP_US, include_incomplete=True)
    # the last event is not on a step boundary here, so tonic's incomplete window holds it
    assert (events["t"][-1] - events["t"][0]) % STEP_US != 0
    np.testing.assert_array_equal(frames, expected.astype(np.float32))
    assert frames.sum() == len(events)


def test_explicit_origin_and_int16_counts_match_tonic_start_time():
    events = recording(seed=3)
    origin = int(events["t"][0]) - 2500
    binner = StepBinner(SENSOR, 700, origin_us=origin, dtype=np.int16)
    for chunk in np.array_split(events, 7):
        binner.push(chunk)
    frames = binner.pop().frames
    expected = to_frame_numpy(events.copy(), SENSOR, time_window=700, start_time=origin)
    assert frames.dtype == np.int16
    np.testing.assert_array_equal(frames, expected)


def test_one_polarity_sensor_merges_channels():
    events = make_events([1, 2, 3], [0, 0, 0], [0, 10, 2000], [1, 1, 1])
    binner = StepBinner((4, 1, 1), STEP_US)
    binner.push(events)
    frames = binner.pop().frames
    np.testing.assert_array_equal(frames[:, 0, 0], [[0, 1, 1, 0], [0, 0, 0, 0]])


def test_late_and_outside_events_are_counted_not_binned():
    binner = StepBinner((4, 4, 2), STEP_US)
    binner.push(make_events([0, 1], [0, 0], [0, 2500], [0, 0]), arrival_ns=5)
    assert binner.ready == 2
    batch = binner.pop()
    binner.push(make_events([2, 9, 3], [0, 0, 0], [1500, 2600, 3100], [0, 0, 1]), arrival_ns=9)
    assert binner.late_events == 1  # t=1500 belongs to step 1, already handed out
    assert binner.out_of_sensor_events == 1  # x=9 on a 4-wide sensor
    binner.flush()
    rest = binner.pop()
    assert batch.events.tolist() == [1, 0]
    assert rest.events.tolist() == [1, 1]
    assert rest.first_step == 2


def test_arrival_is_the_last_event_of_a_step_or_the_closing_event():
    binner = StepBinner((4, 4, 2), STEP_US)
    binner.push(make_events([0], [0], [100], [0]), arrival_ns=10)
    binner.push(make_events([0], [0], [200], [0]), arrival_ns=20)
    binner.push(make_events([0], [0], [3200], [0]), arrival_ns=30)  # closes steps 0, 1, 2
    batch = binner.pop()
    assert batch.first_step == 0
    assert batch.arrival_ns.tolist() == [20, 30, 30]


def test_drop_counts_the_events_of_dropped_steps_and_skip_jumps_gaps():
    binner = StepBinner((4, 4, 2), STEP_US)
    t = [0, 10, 1200, 50_000, 50_100]
    binner.push(make_events([0] * 5, [0] * 5, t, [0] * 5))
    assert binner.ready == 50
    assert binner.drop(1) == 2
    assert binner.pop(1).events.tolist() == [1]
    assert binner.event_steps() == [50]
    binner.skip_to(50)
    binner.flush()
    batch = binner.pop()
    assert (batch.first_step, batch.events.tolist()) == (50, [2])


def test_events_before_the_origin_are_late():
    binner = StepBinner((4, 4, 2), STEP_US, origin_us=10_000)
    binner.push(make_events([0, 1, 2], [0, 0, 0], [8_999, 9_999, 10_000], [0, 0, 0]))
    assert binner.late_events == 2
    binner.flush()
    assert binner.pop().events.tolist() == [1]


def test_step_must_be_positive():
    with pytest.raises(ValueError, match="step_us"):
        StepBinner(SENSOR, 0)


def test_per_event_arrival_takes_the_latest_of_each_step():
    binner = StepBinner((4, 4, 2), STEP_US)
    events = make_events([0, 1, 2, 3], [0] * 4, [100, 900, 1100, 2500], [0] * 4)
    binner.push(events, arrival_ns=np.array([7, 5, 8, 9]))
    assert binner.pop().arrival_ns.tolist() == [7, 8]
