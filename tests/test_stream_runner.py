"""The stream runner equals the model run offline on the whole recording, for any chunking."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from eventsnn.encoding import to_frame
from eventsnn.events import make_events
from eventsnn.nn import build, reset_states
from eventsnn.streaming.runner import StreamRunner, softmax
from eventsnn.streaming.sources import IteratorSource, StreamError

SENSOR = (34, 34, 2)
STEP_US = 1000
SPEC = [
    {"conv": {"out": 6, "kernel": 5, "stride": 2}},
    {"lif": {"beta": 0.9, "threshold": 0.5}},
    {"flatten": {}},
    {"linear": {"out": 10}},
    {"lif": {"beta": 0.8, "threshold": 0.5}},
]


@pytest.fixture(scope="module")
def network() -> torch.nn.Module:
    torch.manual_seed(0)
    net = build(SPEC, (2, 34, 34))
    with torch.no_grad():
        for parameter in net.parameters():
            parameter.mul_(3.0)  # enough drive for the output layer to spike often
    return net.eval()


def recording(seed: int = 1, gap: tuple[int, int] = (50_000, 80_000)) -> np.ndarray:
    """~120 ms of bursty events with a silent gap, starting at an odd time."""
    rng = np.random.default_rng(seed)
    t = np.sort(rng.integers(0, 120_000, 4000))
    t = t[(t < gap[0]) | (t > gap[1])] + 123_457
    n = len(t)
    return make_events(rng.integers(0, 34, n), rng.integers(0, 34, n), t, rng.integers(0, 2, n))


def offline(net: torch.nn.Module, events: np.ndarray, **to_frame_args) -> np.ndarray:
    """The batch path: frames of the whole recording, one multi-step run from rest."""
    frames = to_frame(events, SENSOR, time_window=STEP_US, dtype=np.float32, **to_frame_args)
    reset_states(net)
    with torch.no_grad():
        return net(torch.from_numpy(frames)[:, None])[:, 0].double().numpy()


def chunkings(events: np.ndarray) -> dict[str, list[np.ndarray]]:
    def by_time(duration: int) -> list[np.ndarray]:
        slot = (events["t"] - events["t"][0]) // duration
        return np.split(events, np.flatnonzero(np.diff(slot)) + 1)

    return {
        "1 event": [events[i : i + 1] for i in range(len(events))],
        "1 packet": [events[i : i + 100] for i in range(0, len(events), 100)],
        "1 ms": by_time(1000),
        "100 ms": by_time(100_000),
    }


@pytest.fixture(scope="module")
def expected(network) -> np.ndarray:
    out = offline(network, recording())
    assert out.sum() > 50 and len(np.unique(out.sum(axis=0))) > 2  # a test that can fail
    return out


@pytest.mark.parametrize("how", ["1 event", "1 packet", "1 ms", "100 ms"])
def test_any_chunking_equals_offline_multi_step_bit_for_bit(network, expected, how):
    reset_states(network)
    runner = StreamRunner(network, SENSOR, step_us=STEP_US)
    results = []
    for chunk in chunkings(recording())[how]:
        results += runner.feed(chunk)
    got = np.stack([r.spike_counts for r in results])
    assert got.shape == expected.shape
    np.testing.assert_array_equal(got, expected)
    assert [r.step for r in results] == list(range(len(expected)))


def test_windows_sum_steps_and_finish_emits_the_partial_last_window(network):
    events = recording()
    expected = offline(network, events, include_incomplete=True)
    reset_states(network)
    runner = StreamRunner(network, SENSOR, step_us=STEP_US, window_steps=30)
    results = []
    stats = runner.run(IteratorSource(chunkings(events)["1 packet"]), on_result=results.append)
    assert len(results) == -(-len(expected) // 30)
    for i, result in enumerate(results):
        window = expected[30 * i : 30 * (i + 1)]
        np.testing.assert_array_equal(result.spike_counts, window.sum(axis=0))
        np.testing.assert_array_equal(result.probabilities, softmax(window.sum(axis=0)))
        counts = window.sum(axis=0)
        tied = np.count_nonzero(counts == counts.max()) > 1  # silent: no decision
        assert result.label == (-1 if tied else int(np.argmax(counts)))
        assert result.t_start_us == events["t"][0] + 30 * i * STEP_US
    assert sum(r.events for r in results) == len(events) == stats.events
    assert stats.steps == len(expected)


def test_queued_steps_run_in_one_multi_step_call(network):
    reset_states(network)
    runner = StreamRunner(network, SENSOR, step_us=STEP_US, max_steps_per_call=4096)
    results = runner.feed(recording())
    assert runner.stats.model_calls == 1
    assert len(results) == runner.stats.steps > 60


def test_past_the_queue_bound_the_oldest_steps_are_dropped_and_counted(network):
    events = recording()
    reset_states(network)
    runner = StreamRunner(network, SENSOR, step_us=STEP_US, max_queue_steps=10)
    results = runner.feed(events)
    steps = (events["t"] - events["t"][0]) // STEP_US
    complete = int(steps[-1])  # steps before the one of the last event
    assert runner.stats.dropped_steps == complete - 10
    assert runner.stats.dropped_events == int(np.count_nonzero(steps < complete - 10))
    assert [r.step for r in results] == list(range(complete - 10, complete))
    assert results[0].dropped_events == runner.stats.dropped_events
    assert sum(r.dropped_events for r in results[1:]) == 0


def test_steps_older_than_the_lag_bound_are_dropped(network):
    events = recording()
    runner = StreamRunner(network, SENSOR, step_us=STEP_US, max_lag_ms=1000)
    now = time.time_ns()
    half = len(events) // 2
    arrival = np.r_[np.full(half, now - 5 * 10**9), np.full(len(events) - half, now)]
    results = runner.feed(events, arrival_ns=arrival)
    steps = (events["t"] - events["t"][0]) // STEP_US
    # steps whose last event arrived 5 s ago go; the rest (arrived now) are run
    same = steps[half - 1] == steps[half]
    stale = int(steps[half]) if same else int(steps[half - 1]) + 1
    assert runner.stats.dropped_steps == stale
    assert runner.stats.dropped_events == int(np.count_nonzero(steps < stale))
    assert results[0].step == stale and results[0].dropped_events == runner.stats.dropped_events


def test_reset_on_gap_skips_the_gap_and_restarts_from_rest(network):
    events = recording()
    reset_states(network)
    runner = StreamRunner(network, SENSOR, step_us=STEP_US, reset_gap_us=20_000)
    results = runner.feed(events)
    assert runner.stats.resets == 1
    after = [r for r in results if r.step * STEP_US >= 60_000]
    assert after[0].reset and runner.stats.skipped_steps > 20
    second = events[events["t"] >= events["t"][0] + after[0].step * STEP_US]
    start = int(events["t"][0]) + after[0].step * STEP_US
    expected = offline(network, second, start_time=start)
    np.testing.assert_array_equal(np.stack([r.spike_counts for r in after]), expected)


def test_reset_on_command_restarts_from_rest(network):
    events = recording()
    reset_states(network)
    runner = StreamRunner(network, SENSOR, step_us=STEP_US)
    first = runner.feed(events[:1500])
    runner.request_reset()
    rest = runner.feed(events[1500:])
    assert rest[0].reset and rest[0].step == len(first)
    start = int(events["t"][0]) + rest[0].step * STEP_US
    expected = offline(network, events[events["t"] >= start], start_time=start)
    np.testing.assert_array_equal(np.stack([r.spike_counts for r in rest]), expected)


def test_latency_is_measured_from_arrival(network):
    reset_states(network)
    runner = StreamRunner(network, SENSOR, step_us=STEP_US)
    events = recording()
    results = runner.feed(events, arrival_ns=0)  # arrived at the epoch: latency is huge
    assert all(r.latency_ms > 1e9 for r in results)
    assert runner.stats.latency_percentiles()["max"] == max(r.latency_ms for r in results)


@pytest.fixture(scope="module")
def classifiers():
    from eventsnn.models import SpikingClassifier

    made = {}
    for readout in ("count", "max_membrane"):
        torch.manual_seed(1)
        model = SpikingClassifier(SPEC, [2, 34, 34], readout=readout)
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.mul_(3.0)
        made[readout] = model.eval()
    return made


@pytest.mark.parametrize("readout", ["count", "max_membrane"])
def test_classifier_window_equals_its_prediction_on_the_whole_recording(classifiers, readout):
    model = classifiers[readout]
    events = recording()
    frames = to_frame(events, SENSOR, time_window=STEP_US, dtype=np.float32)
    with torch.no_grad():
        expected = model.predict_step(torch.from_numpy(frames)[:, None], 0)[0].double().numpy()
        reset_states(model)
        spikes = model.net(torch.from_numpy(frames)[:, None]).sum(dim=(0, 1)).double().numpy()
    runner = StreamRunner(model, SENSOR, step_us=STEP_US, window_steps=len(frames))
    results = []
    for chunk in chunkings(events)["1 packet"]:
        results += runner.feed(chunk)
    assert len(results) == 1
    np.testing.assert_array_equal(results[0].spike_counts, spikes)
    np.testing.assert_allclose(results[0].probabilities, expected, rtol=1e-5, atol=1e-7)
    assert results[0].label == int(np.argmax(expected))


def test_sensor_size_defaults_to_the_models_input(classifiers, network):
    assert StreamRunner(classifiers["count"]).binner.frame_shape == (2, 34, 34)
    assert StreamRunner(network).binner.frame_shape == (2, 34, 34)
    with pytest.raises(StreamError, match="give sensor_size"):
        StreamRunner(torch.nn.Flatten(2))


def test_sensor_size_mismatch_is_a_clear_error(classifiers):
    with pytest.raises(StreamError, match=r"sensor-size mismatch.*use sensor size 34x34x2"):
        StreamRunner(classifiers["count"], (32, 32, 2))


def test_states_saved_mid_stream_resume_exactly(classifiers, tmp_path):
    model = classifiers["count"]
    events = recording()
    expected = offline(model.net, events)
    cut = int(events["t"][0]) + 40 * STEP_US
    runner = StreamRunner(model, SENSOR, step_us=STEP_US)
    first = runner.feed(events[events["t"] < cut]) + runner.finish()
    runner.save_states(tmp_path / "mid.h5")
    resumed = StreamRunner(
        tmp_path / "mid.h5", SENSOR, step_us=STEP_US, origin_us=cut, keep_states=True
    )
    rest = resumed.feed(events[events["t"] >= cut])
    got = np.stack([r.spike_counts for r in first + rest])
    np.testing.assert_array_equal(got, expected[: len(got)])
    assert len(first) == 40 and len(got) == len(expected)


def test_event_filter_downsamples_before_binning_like_the_offline_pipeline():
    from eventsnn.encoding.transforms import Downsample

    rng = np.random.default_rng(4)
    n = 6000
    t = 5000 + np.sort(rng.integers(0, 60_000, n))
    events = make_events(rng.integers(0, 128, n), rng.integers(0, 128, n), t, rng.integers(0, 2, n))
    downsample = Downsample(spatial_factor=0.25)
    torch.manual_seed(0)
    net = build(SPEC, (2, 32, 32)).eval()
    with torch.no_grad():
        for parameter in net.parameters():
            parameter.mul_(3.0)
    small = (32, 32, 2)
    frames = to_frame(downsample(events), small, time_window=STEP_US, dtype=np.float32)
    with torch.no_grad():
        expected = net(torch.from_numpy(frames)[:, None])[:, 0].double().numpy()
    assert expected.sum() > 20
    runner = StreamRunner(net, small, step_us=STEP_US, event_filter=downsample)
    results = []
    for chunk in np.array_split(events, 37):
        results += runner.feed(chunk)
    np.testing.assert_array_equal(np.stack([r.spike_counts for r in results]), expected)
    assert sum(r.events for r in results) == int(frames.sum())
