"""`eventsnn stream` end to end: faery sends UDP on loopback, the command prints JSON lines."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from eventsnn.checkpoint import save
from eventsnn.encoding import to_frame
from eventsnn.events import make_events, read, write
from eventsnn.models import SpikingClassifier
from eventsnn.nn import reset_states
from eventsnn.streaming import ReplaySource, StreamRunner
from eventsnn.streaming.log import read_log
from pipelines import stream

SENSOR = (34, 34, 2)
SPEC = [
    {"conv": {"out": 6, "kernel": 5, "stride": 2}},
    {"lif": {"beta": 0.9, "threshold": 0.5}},
    {"flatten": {}},
    {"linear": {"out": 10}},
    {"lif": {"beta": 0.8, "threshold": 0.5}},
]
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """A checkpoint of a small classifier and a 150 ms recording in ES format."""
    root = tmp_path_factory.mktemp("stream")
    torch.manual_seed(2)
    model = SpikingClassifier(SPEC, list((2, 34, 34)))
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.mul_(3.0)
    save(model, root / "model.h5", states=False)
    rng = np.random.default_rng(5)
    n = 5000
    t = np.sort(rng.integers(0, 150_000, n))
    events = make_events(rng.integers(0, 34, n), rng.integers(0, 34, n), t, rng.integers(0, 2, n))
    write(root / "rec.es", events, SENSOR)
    return {"checkpoint": root / "model.h5", "recording": root / "rec.es", "model": model}


def offline_counts(model: SpikingClassifier, path: Path) -> np.ndarray:
    """Spikes per step of the model run offline on the whole recording (the batch path)."""
    frames = to_frame(read(path).events, SENSOR, time_window=1000, dtype=np.float32)
    reset_states(model)
    with torch.no_grad():
        return model.net(torch.from_numpy(frames)[:, None])[:, 0].double().numpy()


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_line(process: subprocess.Popen, text: str, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        line = process.stderr.readline().decode()
        if text in line:
            return
        if not line and process.poll() is not None:
            raise AssertionError(f"the command ended before printing {text!r}")
    raise AssertionError(f"no {text!r} within {timeout_s} s")


@pytest.mark.slow
def test_faery_udp_to_eventsnn_stream_equals_offline(files):
    """faery's CLI -> UDP -> `eventsnn stream` (t32 packets: tests/test_stream_sources.py)."""
    udp_format = "t64_x16_y16_on8"
    port = free_udp_port()
    command = [
        str(BIN / "eventsnn"), "stream", "--checkpoint", str(files["checkpoint"]),
        "--source", f"udp://127.0.0.1:{port}", "--format", udp_format,
        "--sensor-size", "34x34x2", "--idle-stop-s", "2", "--duration-s", "120", "--no-status",
    ]  # fmt: skip
    receiver = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_for_line(receiver, "listening on udp://127.0.0.1")
        sender = [
            str(BIN / "faery"), "input", "file", str(files["recording"]),
            "output", "udp", f"127.0.0.1:{port}", "--format", udp_format, "--no-progress",
        ]  # fmt: skip
        subprocess.run(sender, check=True, capture_output=True, timeout=120)
        out, err = receiver.communicate(timeout=120)
    finally:
        receiver.kill()
    assert receiver.returncode == 0, err.decode()
    results = [json.loads(line) for line in out.decode().splitlines()]
    expected = offline_counts(files["model"], files["recording"])
    got = np.array([r["spike_counts"] for r in results])
    # the stream also emits the last, incomplete step at its end
    np.testing.assert_array_equal(got[: len(expected)], expected)
    assert len(got) == len(expected) + 1
    assert [r["step"] for r in results] == list(range(len(results)))
    report = json.loads(err.decode().split("eventsnn stream: summary ", 1)[1])
    assert report["events"] == len(read(files["recording"]).events)
    assert report["source"]["malformed_packets"] == report["source"]["kernel_dropped_packets"] == 0
    assert all(r["latency_ms"] >= 0 for r in results[:-1])


def test_replay_to_hdf5_log(files, tmp_path, capsys):
    log = tmp_path / "out.h5"
    argv = [
        "stream", "--checkpoint", str(files["checkpoint"]), "--source", str(files["recording"]),
        "--as-fast-as-possible", "--window-steps", "10", "--log", str(log), "--no-status",
    ]  # fmt: skip
    assert stream.main(argv) == 0
    captured = capsys.readouterr()
    assert captured.out == ""  # results go to the log
    back = read_log(log)
    expected = offline_counts(files["model"], files["recording"])
    rows = back["results"]
    assert len(rows) == -(-(len(expected) + 1) // 10)
    np.testing.assert_array_equal(rows["spike_counts"][0], expected[:10].sum(axis=0))
    assert back["summary"]["steps"] == len(expected) + 1
    assert back["metadata"]["sensor_size"] == list(SENSOR)


def test_port_in_use_is_one_error_line(files, capsys):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        argv = ["stream", "--checkpoint", str(files["checkpoint"]), "--source",
                f"udp://127.0.0.1:{port}", "--duration-s", "1"]  # fmt: skip
        assert stream.main(argv) == 2
    err = capsys.readouterr().err
    assert f"udp://127.0.0.1:{port} is already in use" in err
    assert "Traceback" not in err


def test_sensor_size_mismatch_is_one_error_line(files, capsys):
    argv = ["stream", "--checkpoint", str(files["checkpoint"]), "--source",
            str(files["recording"]), "--sensor-size", "128x128x2"]  # fmt: skip
    assert stream.main(argv) == 2
    err = capsys.readouterr().err
    assert "sensor-size mismatch" in err and "use sensor size 34x34x2" in err


def test_bad_sensor_size_text_is_a_usage_error(files, capsys):
    with pytest.raises(SystemExit):
        stream.main(["stream", "--checkpoint", "x.h5", "--source", "-", "--sensor-size", "34x34"])
    assert "is not WxHxP" in capsys.readouterr().err


@pytest.mark.slow
def test_ctrl_c_stops_cleanly_with_a_summary(files):
    command = [
        str(BIN / "eventsnn"), "stream", "--checkpoint", str(files["checkpoint"]),
        "--source", f"udp://127.0.0.1:{free_udp_port()}", "--duration-s", "120",
    ]  # fmt: skip
    receiver = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_for_line(receiver, "listening on")
        receiver.send_signal(signal.SIGINT)
        out, err = receiver.communicate(timeout=60)
    finally:
        receiver.kill()
    assert receiver.returncode == 0, err.decode()
    assert "eventsnn stream: summary" in err.decode()
    assert "Traceback" not in err.decode()
    assert os.path.exists(files["checkpoint"])


@pytest.mark.slow
def test_stream_equals_the_batch_pipeline_on_the_same_recording(files, tmp_path):
    import h5py

    from pipelines import batch

    transform = [
        {
            "class_path": "eventsnn.encoding.transforms.ToFrame",
            "init_args": {"sensor_size": list(SENSOR), "time_window": 1000},
        }
    ]
    argv = [
        "batch", "--checkpoint", str(files["checkpoint"]), "--inputs", str(files["recording"]),
        "--output", str(tmp_path / "batch.h5"), "--transform", json.dumps(transform),
        "--window-us", "1000000", "--progress", "false",
    ]  # fmt: skip
    assert batch.main(argv) == 0
    with h5py.File(tmp_path / "batch.h5") as results:
        assert results["recordings/n_windows"][()].tolist() == [1]
        counts, probabilities = (
            results["windows/spike_counts"][0],
            results["windows/probabilities"][0],
        )
    runner = StreamRunner(files["model"], SENSOR, step_us=1000, window_steps=10**6)
    for packet in ReplaySource(files["recording"], speed=None, packet_us=7000):
        runner.feed(packet.events, packet.arrival_ns)
    # the whole recording is one batch window (its complete 1 ms steps): one stream window
    (window,) = runner.close_window()
    np.testing.assert_array_equal(window.spike_counts, counts)
    np.testing.assert_allclose(window.probabilities, probabilities, rtol=1e-5, atol=1e-12)
    assert window.label == int(np.argmax(probabilities))
