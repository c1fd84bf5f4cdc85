"""The HDF5 results log: rows round-trip, and a log whose writer was SIGKILLed stays readable."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest

from eventsnn.streaming.log import StreamLog, read_log
from eventsnn.streaming.runner import StreamResult
from eventsnn.streaming.sources import StreamError


def result(step: int) -> StreamResult:
    counts = np.arange(3, dtype=np.float64) + step
    return StreamResult(
        step=step,
        t_start_us=1000 * step,
        t_stop_us=1000 * (step + 1),
        events=step % 7,
        spike_counts=counts,
        probabilities=counts / counts.sum(),
        label=2,
        latency_ms=0.5,
        dropped_events=step % 3,
        reset=step == 0,
    )


def test_rows_metadata_and_summary_round_trip(tmp_path):
    path = tmp_path / "log.h5"
    with StreamLog(path, n_classes=3, metadata={"source": "udp://127.0.0.1:9"}) as log:
        for step in range(10):
            log.append(result(step))
        log.close(summary={"steps": 10})
    back = read_log(path)
    rows = back["results"]
    assert rows["step"].tolist() == list(range(10))
    np.testing.assert_array_equal(rows["spike_counts"][4], [4, 5, 6])
    np.testing.assert_allclose(rows["probabilities"][4], np.array([4, 5, 6]) / 15, rtol=1e-6)
    assert rows["reset"].tolist() == [True] + [False] * 9
    assert back["metadata"] == {"source": "udp://127.0.0.1:9"}
    assert back["summary"] == {"steps": 10}


def test_flushed_rows_are_visible_while_writing(tmp_path):
    path = tmp_path / "log.h5"
    log = StreamLog(path, n_classes=3, flush_every_s=0.0)
    log.append(result(0))
    log.append(result(1))
    assert read_log(path)["results"]["step"].tolist() == [0, 1]
    log.close()


WRITER = """
import sys, time
from eventsnn.streaming.log import StreamLog
sys.path.insert(0, {tests!r})
from test_stream_log import result
log = StreamLog({path!r}, n_classes=3, flush_every_s=0.0, chunk_rows=16)
step = 0
while True:
    log.append(result(step))
    step += 1
    if step == 200:
        print("ready", flush=True)
"""


def test_log_survives_sigkill(tmp_path):
    path = tmp_path / "killed.h5"
    code = WRITER.format(tests=os.path.dirname(__file__), path=str(path))
    writer = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    try:
        assert writer.stdout.readline().strip() == b"ready"
        time.sleep(0.2)
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait(timeout=30)
    rows = read_log(path)["results"]
    assert len(rows) >= 200
    assert rows["step"].tolist() == list(range(len(rows)))
    np.testing.assert_array_equal(rows["spike_counts"][:, 0], rows["step"])


def test_not_a_log_is_a_clear_error(tmp_path):
    path = tmp_path / "other.h5"
    with h5py.File(path, "w", libver="latest") as file:
        file["x"] = 1
    with pytest.raises(StreamError, match="other.h5 is not an eventsnn stream log"):
        read_log(path)
