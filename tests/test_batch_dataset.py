"""How `WindowDataset` puts windows and finished-recording records into batches."""

from __future__ import annotations

import numpy as np
import pytest
import tonic

from eventsnn.data.errors import ConfigError
from eventsnn.encoding.transforms import CenterCrop, Decimation, Denoise, RefractoryPeriod, ToFrame
from eventsnn.events import make_events, write
from eventsnn.inference.dataset import RecordingTask, WindowDataset, window_time_steps
from eventsnn.inference.windows import WindowConfig

SENSOR = (8, 8, 2)


def test_a_record_follows_its_windows_and_waits_for_no_other_recording(tmp_path):
    """Records of recordings without windows (here of another sensor) go at once, in batches
    of their own, not with the next full batch; every record comes after all its windows."""
    paths = []
    for i, (sensor, n) in enumerate([(SENSOR, 11), *[((34, 34, 2), 1)] * 3, (SENSOR, 5)]):
        t = np.arange(n) * 1000  # one event a 1 ms window
        paths.append(tmp_path / f"rec{i}.npy")
        write(paths[-1], make_events(np.ones(n), np.zeros(n), t, np.ones(n)), sensor)
    tasks = [RecordingTask(i, str(path)) for i, path in enumerate(paths)]
    transform = ToFrame(sensor_size=SENSOR, n_time_bins=2)
    batches = list(WindowDataset(tasks, WindowConfig(duration_us=1000), [transform], SENSOR, 4))

    seen: dict[int, int] = {}  # windows seen so far, per recording
    arrivals = []  # (batch, recording) of each record
    for b, batch in enumerate(batches):
        for recording in batch["windows"]["recording"].tolist():
            seen[recording] = seen.get(recording, 0) + 1
        for record in batch["finished"]:
            assert seen.get(record["recording"], 0) == record["n_windows"]  # all came before
            arrivals.append((b, record["recording"]))
    assert [seen.get(i, 0) for i in range(5)] == [11, 0, 0, 0, 5]
    # recording 0's last 3 windows wait for a full batch (its record with them); 1-3 fail
    # meanwhile and go alone, each in a window-less batch, before recording 4 fills the batch
    failed = [b for b, recording in arrivals if recording in (1, 2, 3)]
    assert all(batches[b]["x"] is None and len(batches[b]["finished"]) == 1 for b in failed)
    assert failed == sorted(failed) and max(failed) < min(b for b, r in arrivals if r == 0)
    assert sum(len(batch["finished"]) for batch in batches) == 5
    assert [batch["x"].shape[1] for batch in batches if batch["x"] is not None] == [4, 4, 4, 4]


def test_only_a_sensor_size_mismatch_is_told_the_models_sensor_size(tmp_path):
    """The hint goes with the errors of another sensor size (the file's, or events off the
    model's sensor), not with any error whose text says "sensor" (here in the folder name)."""
    folder = tmp_path / "sensors_lab"
    one = make_events([20], [1], [5], [1])
    write(folder / "says.npy", one, (34, 34, 2))  # the file declares another sensor
    write(folder / "off.npy", one, (34, 34, 2))
    (folder / "off.npy.json").unlink()  # no declared size: the event is off the 8x8 sensor
    (folder / "junk.npy").write_bytes(b"not events")
    names = ["says.npy", "off.npy", "junk.npy"]
    tasks = [RecordingTask(i, str(folder / name)) for i, name in enumerate(names)]
    transform = ToFrame(sensor_size=SENSOR, n_time_bins=2)
    dataset = WindowDataset(tasks, WindowConfig(duration_us=1000), [transform], SENSOR, 4)
    errors = {r["path"][len(str(folder)) + 1 :]: r["error"] for b in dataset for r in b["finished"]}
    hint = " (the checkpoint's model takes sensor size (8, 8, 2))"
    assert errors["says.npy"].endswith(f"sensor_size=(8, 8, 2) was given{hint}")
    assert "out of the sensor: event 0 has x=20" in errors["off.npy"]
    assert errors["off.npy"].endswith(hint)
    assert errors["junk.npy"].startswith(str(folder / "junk.npy"))
    assert hint not in errors["junk.npy"]


@pytest.mark.parametrize(
    "filters",
    [[], [Denoise(filter_time=1000)], [RefractoryPeriod(delta=10**6)], [Decimation(n=4)],
     [CenterCrop(sensor_size=(34, 34, 2), size=8)]],
    ids=["none", "denoise", "refractory", "decimation", "crop"],
)  # fmt: skip
def test_the_steps_a_time_window_pads_to_do_not_depend_on_filters(filters):
    """A window spanning 100 ms binned by 10 ms: the steps of tonic's ToFrame of two events
    99,999 us apart (9 complete frames), whatever filters before ToFrame would drop of them."""
    to_frame = ToFrame(sensor_size=(34, 34, 2), time_window=10_000)
    truth = tonic.transforms.ToFrame(sensor_size=(34, 34, 2), time_window=10_000)
    two = np.zeros(2, dtype=[("x", "<i2"), ("y", "<i2"), ("t", "<i8"), ("p", "?")])
    two["t"] = [0, 99_999]
    window = WindowConfig(duration_us=100_000)
    assert window_time_steps(window, [*filters, to_frame]) == len(truth(two)) == 9
    by_bins = ToFrame(sensor_size=(34, 34, 2), n_time_bins=3)  # count windows: T not by span
    assert window_time_steps(WindowConfig(n_events=100), [*filters, by_bins]) is None


@pytest.mark.parametrize("time_window", [10, 10**6, 10**10])
def test_count_windows_whose_steps_follow_their_span_are_found_at_any_time_window(time_window):
    """However long ToFrame's time window, some span of a count window gives more steps."""
    transforms = [ToFrame(sensor_size=SENSOR, time_window=time_window)]
    with pytest.raises(
        ConfigError, match=r"^transform: windows of 100 events encode to \d+ time steps"
    ):
        window_time_steps(WindowConfig(n_events=100), transforms)
    fixed = [ToFrame(sensor_size=SENSOR, n_time_bins=3)]  # probed with 10k events, no overflow
    assert window_time_steps(WindowConfig(n_events=10**7), fixed) is None


@pytest.mark.parametrize("window", [WindowConfig(duration_us=1000), WindowConfig(n_events=2)])
def test_times_too_near_the_int64_limit_fail_their_recording_only(tmp_path, window):
    """A window holding an event less than a window before 2**63 - 1 would end past what int64
    (the columns, the window arithmetic) holds: that recording fails, named; the others go on."""
    last = 2**63 - 1
    write(tmp_path / "edge.npy", make_events([1, 2], [0, 0], [last - 5, last], [1, 0]), SENSOR)
    write(tmp_path / "fine.npy", make_events([1, 2], [0, 0], [0, 10], [1, 0]), SENSOR)
    tasks = [
        RecordingTask(i, str(tmp_path / name)) for i, name in enumerate(["edge.npy", "fine.npy"])
    ]
    transform = ToFrame(sensor_size=SENSOR, n_time_bins=2)
    batches = list(WindowDataset(tasks, window, [transform], SENSOR, 4))
    records = {r["recording"]: r for batch in batches for r in batch["finished"]}
    room = window.length if window.by_time else 1
    assert records[0]["error"] == (
        f"{tmp_path / 'edge.npy'}: an event at t={last} us is within {room} us of the largest "
        f"time int64 holds ({last}): the end of its window cannot be stored"
    )
    assert (records[1]["error"], records[1]["n_windows"]) == ("", 1)
