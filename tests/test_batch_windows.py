"""Windows streamed from files (`iter_windows`) against slicing the whole recording with numpy."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from eventsnn.data.errors import ConfigError
from eventsnn.encoding.transforms import ToFrame
from eventsnn.events import EventsError, make_events, read, write
from eventsnn.inference.dataset import RecordingTask, WindowDataset
from eventsnn.inference.windows import WindowConfig, iter_windows

SENSOR = (16, 16, 2)


@pytest.fixture(scope="module")
def recording(tmp_path_factory) -> str:
    """2000 events with a 3 ms gap, so that some time windows are empty."""
    rng = np.random.default_rng(1)
    t = np.sort(rng.integers(0, 20_000, 2000))
    t[t > 10_000] += 3_000
    path = tmp_path_factory.mktemp("windows") / "rec.h5"
    write(path, make_events(rng.integers(0, 16, 2000), rng.integers(0, 16, 2000), t, t % 2), SENSOR)
    return str(path)


def expected_windows(n_or_t: np.ndarray, length: int, stride: int) -> list[np.ndarray]:
    """Hand-made truth: indices of the complete windows over sorted keys (times, or event
    indices), then of the first incomplete one if it holds keys the previous window did not."""
    first, last = int(n_or_t[0]), int(n_or_t[-1])
    out, start = [], first
    while start + length - 1 <= last:  # complete: a key at or after its last unit
        index = np.flatnonzero((n_or_t >= start) & (n_or_t < start + length))
        if len(index):
            out.append(index)
        start += stride
    previous_end = start - stride + length
    if start == first or last >= previous_end:
        out.append(np.flatnonzero(n_or_t >= start))
    return out


BLOCKS = [2**20, 97, 1]  # the whole recording in one block; windows across (tiny) blocks


@pytest.mark.parametrize("block", BLOCKS)
@pytest.mark.parametrize(("length", "overlap"), [(1000, 0), (1000, 400), (3000, 2000), (700, 650)])
def test_time_windows_equal_numpy_slices(recording, length, overlap, block):
    events = read(recording).events
    config = WindowConfig(duration_us=length, overlap=overlap)
    windows = list(iter_windows(recording, config, block_events=block))
    expected = expected_windows(events["t"], length, length - overlap)
    assert len(windows) == len(expected)
    for window, truth in zip(windows, expected, strict=True):
        np.testing.assert_array_equal(window.events, events[truth])
        assert window.first_event == truth[0]
        assert window.t_start <= events["t"][truth[0]] and events["t"][truth[-1]] < window.t_stop
        assert window.t_stop - window.t_start == length


@pytest.mark.parametrize("block", BLOCKS)
def test_time_windows_skip_the_gap(recording, block):
    config = WindowConfig(duration_us=1000)
    starts = [w.t_start for w in iter_windows(recording, config, block_events=block)]
    first = read(recording).events["t"][0]
    assert all((s - first) % 1000 == 0 for s in starts)
    assert (
        len(starts) < (read(recording).events["t"][-1] - first) // 1000 + 1
    )  # empty ones left out


def _as_tuples(windows) -> list[tuple]:
    return [(w.index, w.t_start, w.t_stop, w.first_event, w.events.tobytes()) for w in windows]


@pytest.mark.parametrize("suffix", [".h5", ".npy"])
@pytest.mark.parametrize("parts", [2, 3, 7])
@pytest.mark.parametrize("length", [1000, 700, 25_000])  # 25 ms: longer than the recording
def test_parts_of_a_recording_hold_its_windows_once_in_order(
    recording, tmp_path, suffix, parts, length
):
    """Split across processes, the parts' windows are the whole recording's, in order (the gap
    leaves some parts' first windows empty; with 7 parts of 25 ms most parts are empty)."""
    path = recording if suffix == ".h5" else str(tmp_path / "rec.npy")
    if suffix == ".npy":
        write(path, read(recording).events, SENSOR)
    config = WindowConfig(duration_us=length)
    whole = _as_tuples(iter_windows(path, config, block_events=97))
    split = [
        _as_tuples(iter_windows(path, config, block_events=97, part=k, parts=parts))
        for k in range(parts)
    ]
    assert [w for windows in split for w in windows] == whole
    assert split[0] and split[0][0] == whole[0]  # empty parts come last: never the first
    if length == 1000:
        assert all(split)  # every part does some of the work


def test_pieces_of_a_split_recording_count_each_event_read_once(recording):
    """A piece's n_events is where its last window ends in the file (the merge joins pieces by
    the largest); events_read, what the progress bar counts, is the events it read itself."""
    tasks = [RecordingTask(k, recording, part=k, parts=3) for k in range(3)]
    transform = ToFrame(sensor_size=SENSOR, n_time_bins=2)
    dataset = WindowDataset(tasks, WindowConfig(duration_us=1000), [transform], SENSOR, 8)
    records = [record for batch in dataset for record in batch["finished"]]
    assert [r["recording"] for r in records] == [0, 1, 2] and not any(r["error"] for r in records)
    assert sum(r["events_read"] for r in records) == len(read(recording).events) == 2000
    assert records[-1]["n_events"] == 2000 and records[0]["n_events"] < 2000


def test_recordings_that_cannot_be_split_go_whole_to_part_0(recording, tmp_path):
    """Overlapping or count windows, and formats that cannot seek by time, are not split."""
    es = tmp_path / "rec.es"
    write(es, read(recording).events, SENSOR)
    for path, config in [
        (recording, WindowConfig(duration_us=1000, overlap=500)),
        (recording, WindowConfig(n_events=300)),
        (es, WindowConfig(duration_us=1000)),
    ]:
        whole = _as_tuples(iter_windows(path, config))
        assert _as_tuples(iter_windows(path, config, part=0, parts=2)) == whole
        assert list(iter_windows(path, config, part=1, parts=2)) == []


@pytest.mark.parametrize("block", [2**20, 7])
def test_long_gap_gives_only_windows_with_events(tmp_path, block):
    """20k overlapping windows span the 200 ms gap; only the ones holding events come out."""
    t = np.r_[np.arange(0, 300, 10), np.arange(200_000, 200_300, 10)]
    path = tmp_path / "gap.npy"
    write(path, make_events(t % 16, t % 7, t, t % 2), SENSOR)
    windows = list(iter_windows(path, WindowConfig(duration_us=20, overlap=10), block_events=block))
    expected = expected_windows(t, 20, 10)
    assert [w.first_event for w in windows] == [int(e[0]) for e in expected]
    assert [len(w.events) for w in windows] == [len(e) for e in expected]
    assert len(windows) < 70


@pytest.mark.parametrize("block", BLOCKS)
@pytest.mark.parametrize(("length", "overlap"), [(300, 0), (300, 100), (256, 255), (5000, 0)])
def test_count_windows_equal_numpy_slices(recording, length, overlap, block):
    events = read(recording).events
    config = WindowConfig(n_events=length, overlap=overlap)
    windows = list(iter_windows(recording, config, block_events=block))
    expected = expected_windows(np.arange(len(events)), length, length - overlap)
    assert [w.first_event for w in windows] == [int(e[0]) for e in expected]
    for window, truth in zip(windows, expected, strict=True):
        np.testing.assert_array_equal(window.events, events[truth])
        assert (window.t_start, window.t_stop) == (
            window.events["t"][0],
            window.events["t"][-1] + 1,
        )
    assert windows[-1].first_event + len(windows[-1].events) == len(events)


def random_recording(rng: np.random.Generator) -> np.ndarray:
    """Up to 80 events: spread over 400 us, on few distinct times, or in two bursts 5 ms apart."""
    n = int(rng.integers(1, 80))
    t = [
        rng.integers(0, 400, n),
        rng.integers(0, 20, n) * 25,
        np.r_[rng.integers(0, 60, n // 2), rng.integers(5000, 5060, n - n // 2)],
    ][int(rng.integers(0, 3))]
    return make_events(
        rng.integers(0, 16, n), rng.integers(0, 16, n), np.sort(t), rng.random(n) < 0.5
    )


def random_config(rng: np.random.Generator) -> WindowConfig:
    """Time windows from 1 us to longer than any recording (6 ms), or windows of 1 to 100
    events; half of them overlap."""
    by_time = rng.random() < 0.7
    length = int(rng.integers(1, 6000 if by_time and rng.random() < 0.5 else 100))
    overlap = int(rng.integers(0, length)) if rng.random() < 0.5 else 0
    if by_time:
        return WindowConfig(duration_us=length, overlap=overlap)
    return WindowConfig(n_events=length, overlap=overlap)


@pytest.mark.parametrize("seed", range(3))
def test_windows_over_many_blocks_equal_numpy_slices(tmp_path, seed):
    """Random recordings read in blocks of a few events, so most time windows span many blocks
    (some the whole recording; a count window, whose blocks are made at least as long, spans at
    most two), whole and split into parts, against the hand-made truth."""
    rng = np.random.default_rng(seed)
    for trial in range(40):
        events, config = random_recording(rng), random_config(rng)
        t, block = events["t"], int(rng.choice([1, 2, 3, 7]))
        path = tmp_path / f"rec{trial}{('.npy', '.h5')[trial % 2]}"
        write(path, events, SENSOR)
        windows = list(iter_windows(path, config, block_events=block))
        keys = t if config.by_time else np.arange(len(events))
        expected = expected_windows(keys, config.length, config.stride)
        assert len(windows) == len(expected), (trial, config, block)
        for window, truth in zip(windows, expected, strict=True):
            np.testing.assert_array_equal(window.events, events[truth])
            assert window.first_event == truth[0]
            if config.by_time:
                assert window.t_start == t[0] + window.index * config.stride
                in_range = (t >= window.t_start) & (t < window.t_stop)
                assert np.flatnonzero(in_range).tolist() == truth.tolist()
            else:
                assert window.first_event == window.index * config.stride
        assert all(np.diff([w.index for w in windows]) > 0)
        whole = _as_tuples(windows)
        for parts in (2, 3):
            split = (
                iter_windows(path, config, block_events=block, part=k, parts=parts)
                for k in range(parts)
            )
            assert [w for part in split for w in _as_tuples(part)] == whole


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({}, "window"),
        ({"duration_us": 5, "n_events": 5}, "window"),
        ({"duration_us": 0}, "window"),
        ({"n_events": 10, "overlap": 10}, "overlap"),
    ],
)
def test_bad_window_config_names_the_key(kwargs, key):
    with pytest.raises(ConfigError, match=rf"^{key}:"):
        WindowConfig(**kwargs)


def test_sensor_mismatch_names_the_file(recording):
    with pytest.raises(EventsError, match=r"rec\.h5.*sensor size"):
        list(iter_windows(recording, WindowConfig(duration_us=1000), sensor_size=(8, 8, 2)))


def streamed_peak(path, n: int) -> int:
    """Peak traced memory while windowing a new recording of n events in 100 ms windows."""
    rng = np.random.default_rng(0)
    t = np.sort(rng.integers(0, n * 10, n))  # 100k events/s: 10k events a window
    write(path, make_events(rng.integers(0, 16, n), rng.integers(0, 16, n), t, t % 2), SENSOR)
    del t
    tracemalloc.start()
    windows = iter_windows(path, WindowConfig(duration_us=100_000), block_events=2**18)
    count = sum(len(w.events) for w in windows)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert count == n
    return peak


@pytest.mark.parametrize("suffix", [".npy", ".h5"])
def test_memory_does_not_grow_with_the_recording(tmp_path, suffix):
    """Peak memory is set by the reader's packets and the block, not by the file's length."""
    small = streamed_peak(tmp_path / f"small{suffix}", 2_000_000)
    large = streamed_peak(tmp_path / f"large{suffix}", 4_000_000)
    assert large < 1.2 * small + 2**20, (small, large)
    assert large < 0.9 * 4_000_000 * 13  # below the 52 MB of events in the file


def test_windows_with_events_are_exactly_the_non_empty_ones():
    from eventsnn.inference.windows import _windows_with_events

    rng = np.random.default_rng(5)
    for _ in range(200):
        times = np.sort(rng.integers(0, 5000, rng.integers(1, 40)))
        length, stride = int(rng.integers(1, 400)), int(rng.integers(1, 400))
        k, last = int(rng.integers(0, 5)), int(rng.integers(0, 5000 // stride + 2))
        expected = [
            w
            for w in range(k, last + 1)
            if ((times >= w * stride) & (times < w * stride + length)).any()
        ]
        assert _windows_with_events(times, length, stride, k, last).tolist() == expected
