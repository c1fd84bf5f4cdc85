"""Results bookkeeping (part files, merge, resume set) and the checkpoint's data recipe."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import h5py
import numpy as np
import pytest
import torch
import xxhash
from test_batch_cli import check_tables
from tqdm.auto import tqdm

from eventsnn.data.errors import ConfigError
from eventsnn.encoding.transforms import Denoise, ToFrame
from eventsnn.events import make_events, write
from eventsnn.inference import completed, data_recipe, iter_records, merge, parts_dir
from eventsnn.inference import parts as parts_module
from eventsnn.inference import writer as writer_module
from eventsnn.inference.dataset import RecordingTask, plan_tasks
from eventsnn.inference.parts import RecordingPart, column, commit_parts, put_dataset
from eventsnn.inference.progress import OtherRanks
from eventsnn.inference.recipe import (
    build_transforms,
    canonical_spec,
    canonical_specs,
    training_window,
)
from eventsnn.inference.results import (
    check_job,
    file_checksum,
    job_identity,
    part_files,
    read_recording,
    same_checksum,
)
from eventsnn.inference.windows import WindowConfig
from eventsnn.inference.writer import ResultsWriter
from eventsnn.models.decisions import decide


def part_with_rows(
    output, path: str, probabilities: list[list[float]], sha: str = "abc", flush_bytes: int = 2**24
) -> tuple[RecordingPart, bool]:
    """A finished part for `path`, one window per probability row appended in two batches, and
    whether finishing committed it (rows streamed to its own file)."""
    folder = parts_dir(output) / "rank-0"
    folder.mkdir(parents=True, exist_ok=True)
    part = RecordingPart(folder, path, flush_bytes=flush_bytes)
    rows = np.array(probabilities, dtype=np.float32)
    for half in (rows[:1], rows[1:]):
        part.append({"probabilities": half, "predicted": decide(half), "t_start": half[:, 0]})
    record = {"path": path, "checksum": sha, "size": 10, "n_events": 5, "error": ""}
    return part, part.finish(record, ["1_lif"])


def finished_part(output, path: str, probabilities: list[list[float]], **options) -> None:
    """`part_with_rows`, committed on its own."""
    part, committed = part_with_rows(output, path, probabilities, **options)
    if not committed:
        commit_parts(part.folder, [part])


@pytest.mark.parametrize("flush_bytes", [0, 2**24])  # rows streamed to disk, or buffered
def test_part_whole_recording_predictions_by_mean_and_majority(tmp_path, flush_bytes):
    output = tmp_path / "out.h5"
    finished_part(
        output, "/data/a.npy", [[0.6, 0.4], [0.6, 0.4], [0.0, 1.0]], flush_bytes=flush_bytes
    )
    (part,) = parts_dir(output).glob("rank-0/*.h5")
    with h5py.File(part, "r") as file:
        record = read_recording(file, "/data/a.npy")
        check_tables(file)
    probabilities = record["windows"]["probabilities"]
    np.testing.assert_allclose(probabilities, [[0.6, 0.4], [0.6, 0.4], [0, 1]])
    np.testing.assert_allclose(record["mean_probabilities"], [0.4, 0.6])
    assert record["predicted"] == 1  # mean probability
    assert record["predicted_majority"] == 0  # two windows of three say 0
    assert (record["status"], record["n_windows"], record["parts"]) == ("done", 3, 1)
    assert [p.name for p in parts_dir(output).glob("rank-0/.*")] == []  # no temporary left


def test_unfinished_parts_do_not_count_as_done(tmp_path):
    output = tmp_path / "out.h5"
    finished_part(output, "/data/a.npy", [[1.0, 0.0], [1.0, 0.0]])
    open_part = RecordingPart(parts_dir(output) / "rank-0", "/data/b.npy", flush_bytes=0)
    open_part.append({"predicted": np.array([1])})  # streamed to its own temporary file
    assert open_part.spill_path.exists()
    assert completed(output) == {"/data/a.npy": "abc"}
    open_part.abandon()
    assert not open_part.spill_path.exists()


def test_recordings_of_a_batch_are_committed_together_in_one_file(tmp_path):
    output = tmp_path / "out.h5"
    folder = parts_dir(output) / "rank-0"
    folder.mkdir(parents=True)
    parts = []
    for i in range(3):
        part = RecordingPart(folder, f"/data/{i}.npy")
        part.append({"probabilities": np.eye(2, dtype=np.float32)[[i % 2]], "predicted": [i % 2]})
        assert not part.finish({"checksum": f"s{i}", "n_events": 1, "error": ""}, ["1_lif"])
        parts.append(part)
    assert completed(output) == {}  # finished but not committed: not done yet
    commit_parts(folder, parts)
    assert len(list(folder.glob("*.h5"))) == 1
    assert completed(output) == {f"/data/{i}.npy": f"s{i}" for i in range(3)}
    assert [set(r) for r in iter_records(output, ("path", "not-an-attribute"))] == [{"path"}] * 3
    assert {r["path"]: r["predicted"] for r in iter_records(output)} == {
        "/data/0.npy": 0,
        "/data/1.npy": 1,
        "/data/2.npy": 0,
    }


@pytest.mark.parametrize("failing", [0, 1, 2])
def test_a_commit_interrupted_at_any_recording_commits_none(tmp_path, failing, monkeypatch):
    """A kill while a batch's part file is written leaves no part: none of it counts as done."""
    output = tmp_path / "out.h5"
    finished_part(output, "/data/before.npy", [[1.0, 0.0]])
    folder = parts_dir(output) / "rank-0"
    parts = [part_with_rows(output, f"/data/{i}.npy", [[1.0, 0.0]])[0] for i in range(3)]
    calls = []

    def interrupted(group, name, data):
        calls.append(name)
        if len(calls) > 6 * failing:  # early, mid-way and late in the file
            raise KeyboardInterrupt
        put_dataset(group, name, data)

    monkeypatch.setattr(parts_module, "put_dataset", interrupted)
    with pytest.raises(KeyboardInterrupt):
        commit_parts(folder, parts)
    assert completed(output) == {"/data/before.npy": "abc"}
    assert [p.name for p in folder.iterdir() if p.name.startswith(".")] == []
    (folder / ".left-by-sigkill.h5.tmp").write_bytes(b"half an HDF5 file")  # what a kill leaves
    assert completed(output) == {"/data/before.npy": "abc"}
    assert merge(output, {"mode": "predict"}) == 1


def fake_batch(recording: int) -> dict:
    """A predicted batch of one window that finishes recording `recording`."""
    return {
        "windows": {"recording": torch.tensor([recording]), "index": torch.tensor([0])},
        "probabilities": torch.tensor([[0.25, 0.75]]),
        "predicted": torch.tensor([1]),
        "finished": [{"recording": recording, "checksum": f"s{recording}", "error": "",
                      "path": f"/data/{recording}.npy", "n_events": 1}],
    }  # fmt: skip


def rank_writer(output: Path, recordings: int, mode: str, commit_seconds: float) -> ResultsWriter:
    """A rank-0 writer of `recordings` tasks, set up as the trainer's `setup` would."""
    writer = ResultsWriter(output, {"mode": mode}, progress=False, commit_seconds=commit_seconds)
    writer.folder = parts_dir(output) / "rank-0"
    writer.folder.mkdir(parents=True)
    writer.tasks = {i: RecordingTask(i, f"/data/{i}.npy") for i in range(recordings)}
    return writer


def test_finished_recordings_are_committed_together_every_commit_seconds(tmp_path):
    """Between commits finished recordings wait in memory; an interruption commits them."""
    output = tmp_path / "out.h5"
    writer = rank_writer(output, 4, "predict", commit_seconds=3600)
    module = SimpleNamespace(layer_names=["1_lif"])
    for recording in (0, 1):
        writer.write_on_batch_end(None, module, fake_batch(recording), None, None, 0)
    assert completed(output) == {}  # finished within the hour: not on disk yet
    writer.commit_seconds = 0
    writer.write_on_batch_end(None, module, fake_batch(2), None, None, 0)
    assert len(part_files(output)) == 1  # the three together
    assert completed(output) == {f"/data/{i}.npy": f"s{i}" for i in range(3)}
    writer.commit_seconds = 3600
    writer.write_on_batch_end(None, module, fake_batch(3), None, None, 0)
    trainer = SimpleNamespace(strategy=SimpleNamespace(launcher=None), is_global_zero=True)
    writer.on_exception(trainer, module, KeyboardInterrupt())
    records = {r["path"]: r for r in iter_records(output)}
    assert len(records) == 4 and records["/data/3.npy"]["predicted"] == 1


def test_a_commit_is_due_when_finished_rows_pass_commit_bytes(tmp_path, monkeypatch):
    output = tmp_path / "out.h5"
    writer = rank_writer(output, 2, "predict", commit_seconds=3600)
    monkeypatch.setattr(writer_module, "COMMIT_BYTES", 0)  # rows of encoded windows: large
    for recording in (0, 1):
        writer.write_on_batch_end(None, SimpleNamespace(), fake_batch(recording), None, None, 0)
        assert len(completed(output)) == recording + 1


def test_rows_of_another_shape_fail_their_recording_alone(tmp_path):
    """Encoded frames sized by each window's events cannot share the run's table."""
    output = tmp_path / "out.h5"
    writer = rank_writer(output, 3, "encode", commit_seconds=0)
    for recording, size in enumerate((4, 5, 4)):
        batch = fake_batch(recording)
        del batch["probabilities"], batch["predicted"]
        batch["encoded"] = torch.zeros((1, 2, size, size))
        writer.write_on_batch_end(None, SimpleNamespace(), batch, None, None, 0)
    merge(output, {"mode": "encode"})
    records = {r["path"]: r for r in iter_records(output)}
    assert [records[f"/data/{i}.npy"]["status"] for i in range(3)] == ["done", "failed", "done"]
    error = records["/data/1.npy"]["error"]
    assert error.startswith("/data/1.npy: its encoded rows are float32 [2, 5, 5], the run's")
    assert records["/data/1.npy"]["n_windows"] == 0
    with h5py.File(output, "r") as file:
        check_tables(file)
        assert file["windows/encoded"].shape == (2, 2, 4, 4)


def test_an_older_result_outlives_a_newer_failure_to_read_the_file(tmp_path):
    """A file away for a moment (a network share) fails with no checksum: the good rows stay."""
    output = tmp_path / "out.h5"
    finished_part(output, "/data/a.npy", [[0.0, 1.0]], sha="good")
    assert merge(output, {"mode": "predict"}) == 1
    folder = parts_dir(output) / "rank-0"
    unread = RecordingPart(folder, "/data/a.npy")
    unread.finish({"checksum": "", "error": "/data/a.npy: No such file or directory"}, [])
    commit_parts(folder, [unread])
    part = RecordingPart(folder, "/data/b.npy")
    part.finish({"checksum": "", "error": "/data/b.npy: gone"}, [])
    commit_parts(folder, [part])  # newer, but b has no older result to keep instead
    assert merge(output, {"mode": "predict"}) == 2
    records = {r["path"]: r for r in iter_records(output)}
    assert (records["/data/a.npy"]["status"], records["/data/a.npy"]["checksum"]) == (
        "done",
        "good",
    )
    assert records["/data/b.npy"]["status"] == "failed"


def test_the_newest_part_of_a_recording_wins(tmp_path):
    output = tmp_path / "out.h5"
    finished_part(output, "/data/a.npy", [[1.0, 0.0]], sha="first")
    finished_part(output, "/data/a.npy", [[0.0, 1.0]], sha="second")
    assert completed(output) == {"/data/a.npy": "second"}
    assert merge(output, {"mode": "predict"}) == 1
    (record,) = iter_records(output)
    assert record["checksum"] == "second" and record["predicted"] == 1


def test_an_unreadable_part_is_skipped_with_a_warning_and_its_recordings_redone(tmp_path):
    """Parts are not fsynced: after a power cut one may hold garbage under its final name."""
    output = tmp_path / "out.h5"
    finished_part(output, "/data/a.npy", [[1.0, 0.0]])
    garbage = parts_dir(output) / "rank-0" / "00000000000000000001-1-000000.h5"  # oldest
    garbage.write_bytes(b"\0" * 4096)
    with pytest.warns(UserWarning, match=r"00000000000000000001-1-000000.h5: skipped, not a"):
        assert completed(output) == {"/data/a.npy": "abc"}
    with pytest.warns(UserWarning, match="will be redone"):
        assert merge(output, {"mode": "predict"}) == 1
    assert [r["path"] for r in iter_records(output)] == ["/data/a.npy"]
    assert not parts_dir(output).exists()


def test_rank_0s_progress_counts_what_the_other_ranks_commit_in_this_run(tmp_path):
    """Recordings, windows and events of the other ranks' new part files: a whole recording's
    events are its n_events, a piece's those of its windows (n_events is where it ends)."""
    output = tmp_path / "out.h5"
    own, other = parts_dir(output) / "rank-0", parts_dir(output) / "rank-1"
    other.mkdir(parents=True)
    own.mkdir()

    def commit(folder: Path, path: str, events: list[int], n_events: int, part: int = 0) -> None:
        recording = RecordingPart(folder, path, part=part, parts=1 if part == 0 else 2)
        recording.append({"n_events": np.array(events), "index": np.arange(len(events))})
        recording.finish({"path": path, "checksum": "c", "n_events": n_events}, [])
        commit_parts(folder, [recording])

    commit(other, "/data/earlier.npy", [5], 5)  # a killed run's: not this run's work
    progress = OtherRanks(parts_dir(output), own)
    assert progress.update() == 0
    commit(other, "/data/a.npy", [10, 20], 30)
    commit(other, "/data/long.h5", [7, 8, 9], 1000, part=1)  # events 976..999 of the file
    commit(own, "/data/mine.npy", [4], 4)  # rank 0 counts its own
    assert progress.update() == 2
    assert (progress.done.recordings, progress.done.windows, progress.done.events) == (2, 5, 54)
    assert progress.update() == 0  # each file is read once


def test_the_progress_bar_closes_when_the_commit_on_the_way_out_fails(tmp_path):
    writer = ResultsWriter(tmp_path / "out.h5", {}, progress=True)
    writer.bar = tqdm(total=3)

    def full_disk() -> None:
        raise OSError("disk full")

    writer._commit = full_disk
    trainer = SimpleNamespace(strategy=SimpleNamespace(launcher=None), is_global_zero=False)
    with pytest.raises(OSError, match="disk full"):
        writer.on_exception(trainer, None, RuntimeError("stopped"))
    assert writer.bar.disable  # closed: the error is not printed on the bar's line


UNIFORM = [0.5, 0.5]  # a silent count readout: every class scored alike


@pytest.mark.parametrize("split", [False, True], ids=["one piece", "split"])
def test_silent_windows_decide_nothing_and_do_not_vote(tmp_path, split):
    """Two silent windows and one for class 1: the recording is class 1 by mean and by vote
    (argmax would have made the silent windows class 0 and won the vote for it); a recording
    of silent windows only decides nothing. Alike whole or joined from pieces."""
    output = tmp_path / "out.h5"
    folder = parts_dir(output) / "rank-0"
    folder.mkdir(parents=True)
    recordings = {"/data/some.npy": [UNIFORM, UNIFORM, [0.2, 0.8]], "/data/quiet.npy": [UNIFORM]}
    for path, rows in recordings.items():
        pieces = [rows[:1], rows[1:]] if split and len(rows) > 1 else [rows]
        for part, piece in enumerate(pieces):
            recording = RecordingPart(folder, path, part=part, parts=len(pieces))
            probabilities = np.array(piece, dtype=np.float32)
            recording.append({"probabilities": probabilities, "predicted": decide(probabilities)})
            recording.finish({"path": path, "checksum": "c", "n_windows": len(piece)}, [])
            commit_parts(folder, [recording])
    assert merge(output, {"mode": "predict"}) == 2
    records = {r["path"]: r for r in iter_records(output)}
    some, quiet = records["/data/some.npy"], records["/data/quiet.npy"]
    assert (some["predicted"], some["predicted_majority"]) == (1, 1)
    assert (quiet["predicted"], quiet["predicted_majority"]) == (-1, -1)
    with h5py.File(output, "r") as file:
        assert read_recording(file, "/data/some.npy")["windows"]["predicted"].tolist() == [
            -1,
            -1,
            1,
        ]


def test_decide_takes_the_top_class_unless_several_share_it_or_one_is_nan():
    scores = np.array([[0.1, 0.7, 0.2], [0.4, 0.4, 0.2], [1 / 3] * 3, [0.2, 0.3, 0.3]])
    assert decide(scores).tolist() == [1, -1, -1, -1]
    assert decide(np.array([[np.nan] * 3, [0.2, np.nan, 0.5]])).tolist() == [-1, -1]
    assert int(decide(np.array([3, 1, 0]))) == 0 and int(decide(np.zeros(4))) == -1


def test_parts_of_a_split_recording_count_only_once_all_are_merged(tmp_path):
    """A recording split between processes is done when every piece is: the merge joins them
    into one row (windows in part order, counts summed, predictions over all windows)."""
    output = tmp_path / "out.h5"
    folder = parts_dir(output) / "rank-0"
    folder.mkdir(parents=True)
    rows = {0: [[0.9, 0.1], [0.8, 0.2]], 1: [[0.1, 0.9], [0.2, 0.8], [0.3, 0.7]]}

    def commit(part: int) -> None:
        recording = RecordingPart(folder, "/data/long.h5", rank=part, part=part, parts=2)
        probabilities = np.array(rows[part], dtype=np.float32)
        first = 0 if part == 0 else 2
        recording.append(
            {
                "index": np.arange(first, first + len(probabilities)),
                "probabilities": probabilities,
                "predicted": probabilities.argmax(-1),
            }
        )
        record = {"path": "/data/long.h5", "checksum": "c", "size": 10, "error": ""}
        recording.finish({**record, "n_events": 100 * (part + 1), "n_windows": 2 + part}, [])
        commit_parts(folder, [recording])

    commit(0)
    assert completed(output) == {} and list(iter_records(output)) == []
    commit(1)  # all there: done (a run killed now does not redo it), joined by the merge
    assert completed(output) == {"/data/long.h5": "c"} and list(iter_records(output)) == []
    stale = output.with_name(".out.h5.0123456789ab.tmp")  # left by a merge killed mid-way
    stale.write_bytes(b"half")
    assert merge(output, {"mode": "predict"}) == 1
    assert not stale.exists()
    (record,) = iter_records(output)
    assert (record["n_windows"], record["n_events"], record["status"]) == (5, 200, "done")
    assert (record["predicted"], record["predicted_majority"]) == (1, 1)  # mean 0.46 / 0.54
    assert "part" not in record and completed(output) == {"/data/long.h5": "c"}
    with h5py.File(output, "r") as file:
        record = read_recording(file, "/data/long.h5")
        check_tables(file)
    assert record["windows"]["index"].tolist() == [0, 1, 2, 3, 4]
    np.testing.assert_allclose(record["mean_probabilities"], [0.46, 0.54], rtol=1e-6)


def test_a_split_recording_that_fails_keeps_the_windows_before_the_error_only(tmp_path):
    """As an unsplit run stops at a bad event and keeps the windows before it, the pieces after
    a failed piece give no windows: results do not depend on the number of processes."""
    output = tmp_path / "out.h5"
    folder = parts_dir(output) / "rank-0"
    folder.mkdir(parents=True)
    pieces = [  # (windows' probabilities, error, n_events)
        ([[0.9, 0.1], [0.8, 0.2]], "", 100),
        ([[0.7, 0.3]], "/data/long.h5: field 'x' out of the sensor: event 150", 120),
        ([[0.1, 0.9], [0.2, 0.8], [0.3, 0.7]], "", 300),
    ]
    first = 0
    for part, (rows, error, n_events) in enumerate(pieces):
        recording = RecordingPart(folder, "/data/long.h5", rank=part, part=part, parts=3)
        probabilities = np.array(rows, dtype=np.float32)
        index = np.arange(first, first + len(rows))
        first += len(rows)
        recording.append(
            {"index": index, "probabilities": probabilities, "predicted": probabilities.argmax(-1)}
        )
        record = {"path": "/data/long.h5", "checksum": "c", "size": 10, "error": error}
        recording.finish({**record, "n_events": n_events, "n_windows": len(rows)}, [])
        commit_parts(folder, [recording])
    assert merge(output, {"mode": "predict"}) == 1
    (record,) = iter_records(output)
    assert (record["status"], record["error"]) == ("failed", pieces[1][1])
    assert (record["n_windows"], record["n_events"], record["predicted"]) == (3, 120, 0)
    with h5py.File(output, "r") as file:
        check_tables(file)
        record = read_recording(file, "/data/long.h5")
    assert record["windows"]["index"].tolist() == [0, 1, 2]
    np.testing.assert_allclose(record["mean_probabilities"], [0.8, 0.2], rtol=1e-6)


def test_pieces_join_only_with_pieces_of_the_same_split_and_damage_is_skipped(tmp_path):
    """A resume with another number of processes leaves pieces of two splits: the complete one
    is joined. A part file that opens but is damaged inside is skipped, not fatal."""
    output = tmp_path / "out.h5"
    folder = parts_dir(output) / "rank-0"
    folder.mkdir(parents=True)
    for part, parts in ((0, 2), (1, 2), (2, 3)):
        recording = RecordingPart(folder, "/data/long.h5", part=part, parts=parts)
        probabilities = np.array([[0.25, 0.75]], dtype=np.float32)
        recording.append({"index": np.array([part]), "probabilities": probabilities,
                          "predicted": np.array([1])})  # fmt: skip
        recording.finish({"path": "/data/long.h5", "checksum": "c", "n_windows": 1}, [])
        real = commit_parts(folder, [recording])
    damaged = folder / "99999999999999999999-1-000000.h5"  # the newest
    shutil.copyfile(real, damaged)  # a part file of this format, one column lost
    with h5py.File(damaged, "r+") as file:
        del file["recordings/checksum"]
    skipped = r"99999999999999999999-1-000000.h5: skipped, .*/recordings has no column 'checksum'"
    with pytest.warns(UserWarning, match=skipped):
        assert merge(output, {"mode": "predict"}) == 1
    (record,) = iter_records(output)
    assert record["n_windows"] == 2 and record["predicted"] == 1


def test_an_incomplete_split_recording_is_not_merged_and_is_redone(tmp_path):
    output = tmp_path / "out.h5"
    folder = parts_dir(output) / "rank-1"
    folder.mkdir(parents=True)
    recording = RecordingPart(folder, "/data/long.h5", part=1, parts=2)
    recording.finish({"path": "/data/long.h5", "checksum": "c", "n_windows": 0}, [])
    commit_parts(folder, [recording])
    finished_part(output, "/data/a.npy", [[1.0, 0.0]])
    assert merge(output, {"mode": "predict"}, complete=False) == 1
    assert completed(output) == {"/data/a.npy": "abc"}


def test_merge_keeps_old_results_and_prefers_newer_parts(tmp_path):
    output = tmp_path / "out.h5"
    finished_part(output, "/data/a.npy", [[1.0, 0.0], [1.0, 0.0]], sha="old")
    finished_part(output, "/data/b.npy", [[1.0, 0.0], [0.0, 1.0]])
    assert merge(output, {"mode": "predict", "parameters": {"window_us": 5}}) == 2
    assert not parts_dir(output).exists()
    finished_part(output, "/data/a.npy", [[0.0, 1.0], [0.0, 1.0]], sha="new")
    stray = parts_dir(output) / "rank-1" / "x.h5.tmp-1"  # another rank still writing
    stray.parent.mkdir(parents=True)
    stray.write_bytes(b"")
    assert merge(output, {"mode": "predict"}, complete=False) == 2
    assert stray.exists()
    records = {r["path"]: r for r in iter_records(output)}
    assert records["/data/a.npy"]["checksum"] == "new" and records["/data/a.npy"]["predicted"] == 1
    assert records["/data/b.npy"]["checksum"] == "abc"
    with h5py.File(output, "r") as file:
        assert file.attrs["format"] == "eventsnn-batch-results"
        assert [run["mode"] for run in json.loads(file.attrs["runs"])] == ["predict", "predict"]
        assert "parameters" not in file.attrs  # this run's metadata only
        check_tables(file)
        record = read_recording(file, "/data/b.npy")
    assert record["predicted_majority"] == -1  # one vote each: a tie decides nothing
    assert len(record["windows"]["predicted"]) == 2


def test_transforms_from_recipe_specs():
    spec = {
        "class_path": "eventsnn.encoding.transforms.ToFrame",
        "init_args": {"sensor_size": [8, 6, 2], "n_time_bins": 3, "dtype": "numpy.float32"},
    }
    (transform,) = build_transforms([spec], "ck.h5")
    assert transform == ToFrame(sensor_size=(8, 6, 2), n_time_bins=3, dtype=np.float32)
    with pytest.raises(ConfigError, match=r"ck\.h5: transform\[0\].*refusing to import"):
        build_transforms([{"class_path": "os.system", "init_args": {}}], "ck.h5")
    with pytest.raises(ConfigError, match=r"transform\[0\]"):
        build_transforms(
            [{"class_path": "eventsnn.encoding.transforms.ToFrame", "init_args": {"bins": 3}}],
            "ck.h5",
        )


TO_FRAME = "eventsnn.encoding.transforms.ToFrame"
CANONICAL_TO_FRAME = {  # ToFrame's fields, every default written out
    "class_path": TO_FRAME,
    "init_args": {
        "sensor_size": [8, 6, 2],
        "time_window": None,
        "event_count": None,
        "n_time_bins": 3,
        "n_event_bins": None,
        "overlap": 0,
        "include_incomplete": False,
        "start_time": None,
        "end_time": None,
        "dtype": "int16",
        "merge_polarities": False,
    },
}


def test_specs_written_differently_have_one_canonical_form():
    least = {"class_path": TO_FRAME, "init_args": {"sensor_size": [8, 6, 2], "n_time_bins": 3}}
    written = [
        least,
        {**least, "init_args": {**least["init_args"], "include_incomplete": False}},
        {**least, "init_args": {**least["init_args"], "dtype": "numpy.int16"}},
        {**least, "init_args": {"sensor_size": (8, 6, 2), "n_time_bins": np.int64(3)}},
    ]
    for spec in written:
        (canonical,) = canonical_specs([spec], "ck.h5")
        assert canonical == CANONICAL_TO_FRAME, spec
        assert json.loads(json.dumps(canonical)) == canonical  # plain JSON
        assert canonical_specs([canonical], "ck.h5") == [canonical]  # a fixed point
        assert build_transforms([canonical], "ck.h5") == build_transforms([spec], "ck.h5")
    crop = "eventsnn.encoding.transforms.CropTime"
    no_arguments = canonical_specs([{"class_path": crop}], "ck.h5")
    assert no_arguments == [{"class_path": crop, "init_args": {"min": 0, "max": None}}]
    re_exported = {"class_path": "eventsnn.encoding.transforms.NumpyAsType"}
    (tonic_own,) = canonical_specs([{**re_exported, "init_args": {"dtype": "numpy.float32"}}], "x")
    assert tonic_own == {
        "class_path": "tonic.transforms.NumpyAsType",
        "init_args": {"dtype": "float32"},
    }
    other = {**least, "init_args": {"sensor_size": [8, 6, 2], "time_window": 1000.0}}
    assert canonical_specs([other], "ck.h5") != [CANONICAL_TO_FRAME]
    whole = {**other, "init_args": {**other["init_args"], "time_window": 1000}}
    assert canonical_specs([whole], "ck.h5") == canonical_specs([other], "ck.h5")  # 1000 == 1000.0
    (fraction,) = canonical_specs(
        [{**other, "init_args": {**other["init_args"], "time_window": 0.5}}], "x"
    )
    assert fraction["init_args"]["time_window"] == 0.5


def test_specs_that_cannot_be_canonical_are_config_errors_naming_the_transform():
    bad = [
        {"class_path": TO_FRAME, "init_args": {"sensor_size": [8, 6, 2], "bins": 3}},
        {"class_path": TO_FRAME, "init_args": {"sensor_size": [8, 6, 2], "dtype": "nonsense"}},
        {"class_path": TO_FRAME, "init_args": [8, 6, 2]},
        {"class_path": "eventsnn.encoding.transforms.NoSuchTransform"},
        {"class_path": "os.system"},
        "ToFrame",
    ]
    for spec in bad:
        with pytest.raises(ConfigError, match=r"^ck\.h5: transform\[1\]"):
            canonical_specs([CANONICAL_TO_FRAME, spec], "ck.h5")


def stored_job(transform: list) -> str:
    """@job of a run of checkpoint "abc" with these transform specs, as `job_identity` makes it."""
    window = {"window_us": 1000, "window_events": None, "overlap": 0, "sensor_size": [8, 6, 2]}
    parameters = {**window, "transform": transform}
    return job_identity({"checkpoint_sha256": "abc", "mode": "predict", "parameters": parameters})


def test_a_stored_job_is_compared_with_its_transform_specs_made_canonical(tmp_path):
    """Results written before the recipe recorded canonical specs resume; other transforms,
    and stored specs that cannot be made canonical, are refused naming `transform`."""
    output = tmp_path / "out.h5"
    job = stored_job([CANONICAL_TO_FRAME])
    folder = parts_dir(output) / "rank-0"
    folder.mkdir(parents=True)
    least = {"class_path": TO_FRAME, "init_args": {"sensor_size": [8, 6, 2], "n_time_bins": 3}}
    old_style = stored_job([least])
    part = RecordingPart(folder, "/data/a.npy", job=old_style)
    part.finish({"checksum": "xxh3_128:0", "error": ""}, [])
    commit_parts(folder, [part])
    check_job(output, job, canonical_spec)  # no refusal
    with pytest.raises(ConfigError, match=r"another job \(transform differ\)"):
        check_job(output, job)  # the text alone differs
    for other in (
        {**least, "init_args": {**least["init_args"], "n_time_bins": 4}},
        {**least, "init_args": {**least["init_args"], "dtype": "nonsense"}},
        {**least, "class_path": "eventsnn.encoding.transforms.Gone"},
    ):
        (path,) = part_files(output)
        with h5py.File(path, "a") as file:
            file.attrs["job"] = stored_job([other])
        with pytest.raises(ConfigError, match=r"another job \(transform differ\)"):
            check_job(output, job, canonical_spec)
    with h5py.File(path, "a") as file:  # a value that Python finds equal, JSON not
        file.attrs["job"] = json.dumps({**json.loads(job), "overlap": 0.0}, sort_keys=True)
    with pytest.raises(ConfigError, match=r"another job \(overlap differ\)"):
        check_job(output, job, canonical_spec)


def test_training_window_is_the_sample_duration():
    assert training_window({"dataset": "NDigits"}) == WindowConfig(duration_us=300_000)
    options = {"dataset": "NDigits", "dataset_options": {"duration_us": 1000}}
    assert training_window(options) == WindowConfig(duration_us=1000)
    assert training_window({"dataset": "NMNIST"}) is None


def test_recipe_sensor_size_and_missing_parts():
    denoise = {
        "class_path": "eventsnn.encoding.transforms.Denoise",
        "init_args": {"filter_time": 100},
    }
    recipe = data_recipe(
        {"transform": [denoise], "dataset": "NDigits"}, "ck.h5", input_shape=[2, 10, 20]
    )
    assert recipe.transforms == [Denoise(filter_time=100)]
    assert recipe.sensor_size == (20, 10, 2)  # (W, H, P) from the model's (C, H, W)
    with pytest.raises(ConfigError, match=r"^transform: ck\.h5 stores no data transforms"):
        data_recipe({"dataset": "NDigits"}, "ck.h5")
    with pytest.raises(ConfigError, match=r"^window_us:.*--window-us"):
        data_recipe({"transform": [denoise], "dataset": "NMNIST"}, "ck.h5")


def test_checksums_name_their_algorithm_and_match_the_hash_libraries(tmp_path):
    path = tmp_path / "rec.bin"
    data = np.random.default_rng(0).bytes(3_000_001)
    path.write_bytes(data)
    assert file_checksum(path) == f"xxh3_128:{xxhash.xxh3_128(data).hexdigest()}"
    assert file_checksum(path, "sha256") == f"sha256:{hashlib.sha256(data).hexdigest()}"
    assert same_checksum(path, file_checksum(path))
    assert same_checksum(path, f"sha256:{hashlib.sha256(data).hexdigest()}")  # format 1 results
    assert not same_checksum(path, "md5:" + hashlib.md5(data).hexdigest())  # unknown: redo
    path.write_bytes(data[:-1] + b"x")
    assert not same_checksum(path, f"xxh3_128:{xxhash.xxh3_128(data).hexdigest()}")
    with pytest.raises(ValueError, match="unknown checksum algorithm 'md5'"):
        file_checksum(path, "md5")


def test_a_npy_recordings_checksum_covers_its_sensor_size_sidecar(tmp_path):
    """The sidecar gives a .npy its sensor size: a resume must redo a recording whose sidecar
    changed (say, fixed after the recording failed for its size)."""
    path = tmp_path / "rec.npy"
    write(path, make_events([1, 2], [3, 0], [5, 6], [0, 1]), (4, 4, 2))
    data, sidecar = path.read_bytes(), (tmp_path / "rec.npy.json").read_bytes()
    checksum = file_checksum(path)
    assert checksum == f"xxh3_128:{xxhash.xxh3_128(data + sidecar).hexdigest()}"
    (tmp_path / "rec.npy.json").write_text('{"sensor_size": [8, 8, 2], "time_unit": "us"}')
    assert not same_checksum(path, checksum)
    (tmp_path / "rec.npy.json").unlink()
    assert file_checksum(path) == f"xxh3_128:{xxhash.xxh3_128(data).hexdigest()}"


def test_windows_of_another_shape_fail_their_recordings_not_the_merge(tmp_path):
    """Parts of ranks or runs whose windows differ (encoded frames sized by each window): the
    results keep the first shape and the others' recordings fail, naming both shapes."""
    output = tmp_path / "out.h5"
    finished_part(output, "/data/a.npy", [[1.0, 0.0]])
    finished_part(output, "/data/b.npy", [[0.2, 0.3, 0.5]])  # three classes
    assert merge(output, {"mode": "predict"}) == 2
    records = {r["path"]: r for r in iter_records(output)}
    assert records["/data/a.npy"]["status"] == "done"
    b = records["/data/b.npy"]
    assert (b["status"], b["n_windows"], b["predicted"]) == ("failed", 0, -1)
    assert b["error"].startswith("/data/b.npy: its windows' columns in ")
    assert "probabilities float32[3]" in b["error"] and "probabilities float32[2]" in b["error"]
    with h5py.File(output, "r") as file:
        check_tables(file)
        assert np.isnan(read_recording(file, "/data/b.npy")["mean_probabilities"]).all()


@pytest.mark.parametrize("misfit", [0, 1])  # the piece whose windows have three classes
def test_a_split_recording_with_a_piece_of_another_shape_fails_whole_without_windows(
    tmp_path, misfit
):
    """None of its pieces' windows is merged (the others fit): every window row of the results
    belongs to the recording that counts it, and the recording's error names the piece's file."""
    output = tmp_path / "out.h5"
    folder = parts_dir(output) / "rank-0"
    folder.mkdir(parents=True)

    def piece(path: str, windows: int, part: int = 0, parts: int = 1) -> RecordingPart:
        classes = 3 if (parts, part) == (2, misfit) else 2
        recording = RecordingPart(folder, path, part=part, parts=parts)
        probabilities = np.full((windows, classes), 1 / classes, dtype=np.float32)
        recording.append({"probabilities": probabilities, "predicted": np.zeros(windows, int)})
        recording.finish({"path": path, "checksum": "c", "error": ""}, [])
        return recording

    commit_parts(folder, [piece("/data/a.npy", 5), piece("/data/long.h5", 4, 1 - misfit, 2)])
    other = commit_parts(folder, [piece("/data/long.h5", 6, misfit, 2)])
    assert merge(output, {"mode": "predict"}) == 2
    with h5py.File(output, "r") as file:
        check_tables(file)
        counts = file["recordings/n_windows"][()]
        recording = file["windows/recording"][()]
        assert len(recording) == counts.sum() == 5  # a.npy's windows alone
        np.testing.assert_array_equal(np.bincount(recording, minlength=len(counts)), counts)
        np.testing.assert_allclose(file["windows/probabilities"][()], np.full((5, 2), 0.5))
    records = {r["path"]: r for r in iter_records(output)}
    assert (records["/data/a.npy"]["status"], records["/data/a.npy"]["n_windows"]) == ("done", 5)
    long = records["/data/long.h5"]
    assert (long["status"], long["n_windows"], long["predicted"]) == ("failed", 0, -1)
    assert long["error"].startswith(f"/data/long.h5: its windows' columns in {other.name} (")
    assert "probabilities float32[3]" in long["error"]


def test_a_split_recording_that_cannot_be_read_keeps_its_older_result(tmp_path):
    """Every piece failed before reading (no checksum): like a whole one, it does not replace
    the result of a run that could read the file."""
    output = tmp_path / "out.h5"
    finished_part(output, "/data/long.h5", [[0.0, 1.0]], sha="good")
    assert merge(output, {"mode": "predict"}) == 1
    folder = parts_dir(output) / "rank-0"
    folder.mkdir(parents=True)
    for part in range(2):
        piece = RecordingPart(folder, "/data/long.h5", part=part, parts=2)
        piece.finish({"checksum": "", "error": "/data/long.h5: Permission denied"}, [])
        commit_parts(folder, [piece])
    assert completed(output) == {"/data/long.h5": "good"}
    assert merge(output, {"mode": "predict"}) == 1
    (record,) = iter_records(output)
    assert (record["status"], record["checksum"], record["n_windows"]) == ("done", "good", 1)


def test_spilled_and_buffered_recordings_of_one_batch_merge_alike(tmp_path):
    """A recording streamed to its own file and one kept in memory end up the same way."""
    output = tmp_path / "out.h5"
    spilled, committed = part_with_rows(
        output, "/data/big.npy", [[0.2, 0.8], [0.3, 0.7], [0.9, 0.1]], flush_bytes=0
    )
    assert committed  # its own part file, renamed into place by finish()
    small, committed = part_with_rows(output, "/data/small.npy", [[1.0, 0.0], [1.0, 0.0]])
    assert not committed
    commit_parts(small.folder, [small])
    assert len(list(small.folder.glob("*.h5"))) == 2
    assert merge(output, {"mode": "predict"}) == 2
    with h5py.File(output, "r") as file:
        check_tables(file)
        big, small = read_recording(file, "/data/big.npy"), read_recording(file, "/data/small.npy")
    probabilities = [[0.2, 0.8], [0.3, 0.7], [0.9, 0.1]]
    np.testing.assert_allclose(big["windows"]["probabilities"], probabilities)
    np.testing.assert_allclose(big["windows"]["t_start"], [0.2, 0.3, 0.9])
    np.testing.assert_allclose(big["mean_probabilities"], [1.4 / 3, 1.6 / 3], rtol=1e-6)
    assert big["predicted"] == 1 and big["predicted_majority"] == 1 and small["predicted"] == 0


def test_low_level_writes_read_back_as_h5py_high_level_ones(tmp_path):
    """put_dataset (the fast path for many small recordings) against h5py's own."""
    data = {
        "p": np.random.rand(3, 10).astype(np.float32),
        "i": np.arange(4),
        "e": np.zeros((0, 2)),
        "path": column(["/data/ü.npy", ""], ""),
        "seconds": column([0.25], 0.0),
    }
    with h5py.File(tmp_path / "both.h5", "w") as file:
        fast, slow = file.create_group("fast"), file.create_group("slow")
        for name, array in data.items():
            put_dataset(fast, name, array)
            slow.create_dataset(name, data=array)
        for name in data:
            assert fast[name].dtype == slow[name].dtype and fast[name].shape == slow[name].shape
            np.testing.assert_array_equal(fast[name][()], slow[name][()])
        assert fast["path"].asstr()[()].tolist() == ["/data/ü.npy", ""]


def test_plan_splits_only_the_large_recordings_left_over_when_dealt_whole(tmp_path):
    sizes = {"a": 5000, "b": 100, "c": 3000, "d": 4000, "e": 2000}  # bytes; large: >= 1000
    paths = []
    for name, size in sizes.items():
        (tmp_path / name).write_bytes(b"\0" * size)
        paths.append(str(tmp_path / name))
    plan = plan_tasks(paths, 3, 1000)  # 4 large: 3 dealt whole, the smallest of them split
    named = [(Path(t.path).name, t.part, t.parts) for t in plan]  # (splitting a: as busy)
    assert named == [("a", 0, 1), ("d", 0, 1), ("c", 0, 1), ("b", 0, 1)] + [
        ("e", k, 3) for k in range(3)
    ]
    assert [t.index for t in plan] == list(range(7))
    assert all(t.parts == 1 for t in plan_tasks(paths, 2, 1000))  # 4 large, 2 processes
    assert all(t.parts == 1 for t in plan_tasks(paths, 3, 0) + plan_tasks(paths, 1, 1000))


@pytest.mark.parametrize("big", ["a_big", "z_big"])  # first or last by name
def test_plan_splits_what_balances_the_processes_whatever_the_names(tmp_path, big):
    """1000 + 100 + 100 bytes on 2 processes: split the 1000 (600 each, not 1050 + 150);
    1000 + 900 + 100: split the 100 (1050 + 950, not 1400 + 600)."""

    def split_sizes(sizes: list[int]) -> list[int]:
        paths = [tmp_path / name for name in (big, "m", "n")]
        for path, size in zip(paths, sizes, strict=True):
            path.write_bytes(b"\0" * size)
        plan = plan_tasks(sorted(map(str, paths)), 2, 50)
        return sorted({Path(task.path).stat().st_size for task in plan if task.parts == 2})

    assert split_sizes([1000, 100, 100]) == [1000]
    assert split_sizes([1000, 900, 100]) == [100]
