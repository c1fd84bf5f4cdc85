"""File replay (paced and as fast as possible) and standard input sources."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import faery
import numpy as np
import pytest

from eventsnn.events import make_events, write
from eventsnn.streaming.replay import ReplaySource, paced
from eventsnn.streaming.sources import StreamError
from eventsnn.streaming.stdin import StdinSource, from_faery

SENSOR = (34, 34, 2)


def recording(n: int = 3000, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = 1_000_000 + np.sort(rng.integers(0, 60_000, n))
    return make_events(rng.integers(0, 34, n), rng.integers(0, 34, n), t, rng.integers(0, 2, n))


def to_faery(events: np.ndarray) -> np.ndarray:
    out = np.zeros(len(events), dtype=faery.EVENTS_DTYPE)
    for name in ("t", "x", "y"):
        out[name] = events[name]
    out["on"] = events["p"]
    return out


def test_paced_releases_each_window_when_its_time_has_come():
    released = []
    start = time.monotonic()
    for _ in paced(range(10), window_us=20_000, speed=4.0):  # 5 ms of wall time per window
        released.append(time.monotonic() - start)
    due = [(k + 1) * 0.005 for k in range(10)]
    assert all(r >= d for r, d in zip(released, due, strict=True))
    assert released[-1] < 0.05 + 0.5  # generous: a loaded machine may oversleep


def test_paced_without_speed_does_not_wait():
    start = time.monotonic()
    assert list(paced(range(1000), window_us=1_000_000, speed=None)) == list(range(1000))
    assert time.monotonic() - start < 0.5
    with pytest.raises(ValueError, match="speed"):
        list(paced(range(3), 1000, speed=0))


@pytest.mark.parametrize("suffix", [".h5", ".es"])
def test_replay_gives_the_file_back_in_windows(tmp_path, suffix):
    events = recording()
    path = tmp_path / f"rec{suffix}"
    write(path, events, SENSOR)
    source = ReplaySource(path, speed=None, packet_us=5000)
    packets = list(source)
    np.testing.assert_array_equal(np.concatenate([p.events for p in packets]), events)
    assert len(packets) == (events["t"][-1] - events["t"][0]) // 5000 + 1
    assert all(np.ptp(p.events["t"]) < 5000 for p in packets if len(p.events))
    assert source.stats.events == len(events)


def test_binary_records_on_a_pipe_arrive_whole_whatever_the_cuts():
    events = recording(500)
    payload = to_faery(events).tobytes() + b"\x01\x02"  # and a cut record at the end
    read_fd, write_fd = os.pipe()

    def writer() -> None:
        for start in range(0, len(payload), 97):  # cuts through records
            os.write(write_fd, payload[start : start + 97])
        os.close(write_fd)

    thread = threading.Thread(target=writer)
    thread.start()
    source = StdinSource("t64_x16_y16_on8", SENSOR, fd=read_fd)
    received = np.concatenate([p.events for p in source])
    thread.join()
    os.close(read_fd)
    np.testing.assert_array_equal(received, events)
    assert source.stats.malformed_packets == 1


def test_faery_csv_on_stdin(tmp_path):
    events = recording(400)
    np.save(tmp_path / "events.npy", to_faery(events))
    sender = (
        "import faery, numpy as np, sys; "
        f"a = np.load({str(tmp_path / 'events.npy')!r}); "
        "faery.events_stream_from_array(a, dimensions=(34, 34)).to_stdout()"
    )
    receiver = (
        "import json, numpy as np; from eventsnn.streaming.stdin import StdinSource; "
        "e = np.concatenate([p.events for p in StdinSource('csv', (34, 34, 2))]); "
        f"np.save({str(tmp_path / 'got.npy')!r}, e); print(json.dumps(len(e)))"
    )
    produce = subprocess.Popen([sys.executable, "-c", sender], stdout=subprocess.PIPE)
    consume = subprocess.run(
        [sys.executable, "-c", receiver], stdin=produce.stdout, capture_output=True, timeout=60
    )
    produce.stdout.close()
    produce.wait(timeout=60)
    assert consume.returncode == 0, consume.stderr.decode()
    assert json.loads(consume.stdout) == len(events)
    np.testing.assert_array_equal(np.load(tmp_path / "got.npy"), events)


def test_from_faery_keeps_every_field():
    events = recording(10)
    np.testing.assert_array_equal(from_faery(to_faery(events)), events)


def test_spif_needs_datagrams():
    with pytest.raises(StreamError, match="stdin format 'spif'"):
        StdinSource("spif")


def test_headerless_csv_on_stdin_keeps_its_first_event():
    receiver = (
        "from eventsnn.streaming.stdin import StdinSource; "
        "import numpy as np; "
        "s = StdinSource('csv', (34, 34, 2), csv_header=False); "
        "print(np.concatenate([p.events for p in s])['t'].tolist())"
    )
    rows = b"100,3,2,1\n150,4,1,0\n20000,5,5,1\n"
    done = subprocess.run(
        [sys.executable, "-c", receiver], input=rows, capture_output=True, timeout=60
    )
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout.decode().strip() == "[100, 150, 20000]"
