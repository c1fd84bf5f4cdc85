"""Faults between ranks at the end of a run: two merges of one output at once, a rank whose last
commit (or rank 0 whose merge) fails while the others wait for it."""

from __future__ import annotations

import errno
import fcntl
import importlib
import io
import json
import os
import subprocess
import sys
import threading
import warnings
from pathlib import Path
from types import SimpleNamespace

import h5py
import pytest
import torch
from test_batch_cli import GOOD, check_tables, make_checkpoint, write_recordings
from test_batch_results import fake_batch, finished_part, rank_writer
from torch.multiprocessing import ProcessExitedException, ProcessRaisedException

from eventsnn.atomic import temporaries, written_atomically
from eventsnn.inference import completed, iter_records, merge, parts_dir
from eventsnn.inference import writer as writer_module
from eventsnn.inference.dataset import RecordingTask
from eventsnn.inference.parts import RecordingPart
from pipelines import batch

merge_module = importlib.import_module("eventsnn.inference.merge")  # not the function merge
ROOT = Path(__file__).parents[1]


def test_two_merges_of_one_output_take_turns(tmp_path, monkeypatch):
    """Ctrl-C as a forked rank 0 merges: its launcher merges too. The second merge waits for
    the first instead of reading parts the first removes under it (it gets a second to try),
    then finds none left: the output is rank 0's."""
    output = tmp_path / "out.h5"
    rows = {"a": [1.0, 0.0], "b": [0.0, 1.0], "c": [1.0, 0.0]}
    for name, row in rows.items():
        finished_part(output, f"/data/{name}.npy", [row, row])
    read_part, paused, resume = merge_module.read_part, threading.Event(), threading.Event()

    def pausing(path: Path):
        tables = read_part(path)
        if threading.current_thread().name == "rank-0":  # holds a part it will copy later
            paused.set()
            resume.wait()
        return tables

    monkeypatch.setattr(merge_module, "read_part", pausing)
    errors = []

    def merging(complete: bool) -> None:
        try:
            merge(output, {**RUN, "complete": complete}, complete)
        except Exception as error:
            errors.append(error)

    rank_0 = threading.Thread(target=merging, args=(True,), name="rank-0")
    rank_0.start()
    assert paused.wait(60)
    launcher = threading.Thread(target=merging, args=(False,), name="launcher")
    launcher.start()
    launcher.join(timeout=1)  # unlocked, it merges and removes the parts rank 0 holds
    resume.set()
    rank_0.join()
    launcher.join()
    assert errors == []
    records = {r["path"]: r for r in iter_records(output)}
    assert {path: r["predicted"] for path, r in records.items()} == {
        "/data/a.npy": 0,
        "/data/b.npy": 1,
        "/data/c.npy": 0,
    }
    assert all(r["n_windows"] == 2 for r in records.values())
    with h5py.File(output, "r") as file:
        check_tables(file)
        assert [run["complete"] for run in json.loads(file.attrs["runs"])] == [True]
    assert not parts_dir(output).exists()


def merged_twice(output: Path) -> bytes:
    """The output's bytes after a merge of one committed recording, then a second merge."""
    finished_part(output, "/data/a.npy", [[1.0, 0.0]])
    assert merge(output, {**RUN, "complete": False}, complete=False) == 1
    return output.read_bytes()


RUN = {"mode": "predict", "started_unix": 1000.0}
"""A run's metadata: its start tells the merges of one run from another run's."""


def test_a_merge_with_no_part_file_leaves_an_output_that_says_as_much_as_it_is(tmp_path):
    """An interrupted launcher merges after its forked rank 0: nothing is left to take, and the
    output keeps rank 0's run alone (no rewrite, no second entry in its runs)."""
    output = tmp_path / "out.h5"
    first = merged_twice(output)
    unfinished = parts_dir(output) / "rank-1" / ".1-2-0of1.spill.tmp"  # a killed run's
    unfinished.parent.mkdir(parents=True)
    unfinished.write_bytes(b"")
    assert merge(output, {**RUN, "complete": False}, complete=False) == 1
    assert output.read_bytes() == first
    with h5py.File(output, "r") as file:
        assert [run["complete"] for run in json.loads(file.attrs["runs"])] == [False]
    assert unfinished.exists()


@pytest.mark.parametrize("complete", [False, True])
def test_a_merge_with_no_part_file_still_records_what_changed(tmp_path, complete):
    """Another run's merge with no part file: a resume that finds all done completes an
    interrupted output, a run whose commits all failed marks a complete output incomplete (as
    its error says): @complete and the runs are this run's."""
    output = tmp_path / "out.h5"
    finished_part(output, "/data/a.npy", [[1.0, 0.0]])
    merge(output, {**RUN, "complete": not complete}, complete=not complete)
    (parts_dir(output) / "rank-0").mkdir(parents=True, exist_ok=True)
    later = {**RUN, "started_unix": 2000.0, "complete": complete}
    assert merge(output, later, complete) == 1
    with h5py.File(output, "r") as file:
        assert bool(file.attrs["complete"]) == complete
        runs = json.loads(file.attrs["runs"])
    assert [run["complete"] for run in runs] == [not complete, complete]
    assert completed(output) == {"/data/a.npy": "abc"}
    assert parts_dir(output).exists() != complete


def test_temporaries_are_the_files_written_atomically_makes_for_that_name(tmp_path):
    output, other = tmp_path / "out.h5", tmp_path / "out.h5.2"
    with written_atomically(output) as own, written_atomically(other) as others:
        own.write_bytes(b"")
        others.write_bytes(b"")
        assert temporaries(output) == [own]
        assert temporaries(other) == [others]


def test_a_merge_leaves_the_temporary_files_of_an_output_named_like_it(tmp_path):
    """A killed merge's temporary file of out.h5 is removed; out.h5.2's, in flight, is not."""
    output = tmp_path / "out.h5"
    stale = tmp_path / ".out.h5.0123456789ab.tmp"
    stale.write_bytes(b"what a killed merge left")
    finished_part(output, "/data/a.npy", [[1.0, 0.0]])
    with written_atomically(tmp_path / "out.h5.2") as other:
        other.write_bytes(b"another merge writing")
        assert merge(output, {"mode": "predict"}) == 1
        assert other.exists() and not stale.exists()


def flock_failing(monkeypatch, code: int) -> None:
    """fcntl.flock raising OSError(code), as on a filesystem that cannot lock."""

    def failing(fd, operation):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(fcntl, "flock", failing)
    monkeypatch.setattr(merge_module, "_warned_unlocked", False)


def test_where_the_filesystem_cannot_lock_merges_go_on_with_one_warning(tmp_path, monkeypatch):
    """NFS without lockd (ENOLCK), Lustre without -o flock (ENOSYS): warned once, merged."""
    flock_failing(monkeypatch, errno.ENOLCK)
    output = tmp_path / "out.h5"
    with pytest.warns(UserWarning) as warned:
        first = merged_twice(output)
        finished_part(output, "/data/b.npy", [[0.0, 1.0]])
        assert merge(output, {"mode": "predict"}) == 2
    assert len(warned) == 1
    message = str(warned[0].message)
    assert message.startswith(f"{tmp_path / '.out.h5.lock'}: cannot lock")
    assert "No locks available" in message
    assert first != output.read_bytes()
    assert set(completed(output)) == {"/data/a.npy", "/data/b.npy"}


def test_other_lock_errors_fail_the_merge(tmp_path, monkeypatch):
    flock_failing(monkeypatch, errno.EIO)
    output = tmp_path / "out.h5"
    finished_part(output, "/data/a.npy", [[1.0, 0.0]])
    with pytest.raises(OSError, match="Input/output error"):
        merge(output, {"mode": "predict"})
    assert completed(output) == {"/data/a.npy": "abc"}  # the part stays for the next merge


def test_without_fcntl_the_module_imports_and_merges_unlocked(tmp_path, monkeypatch):
    """Windows has no fcntl: importing the merge module must not need it, nor must merging."""
    monkeypatch.setitem(sys.modules, "fcntl", None)  # import fcntl raises ImportError
    importlib.reload(merge_module)
    output = tmp_path / "out.h5"
    finished_part(output, "/data/a.npy", [[1.0, 0.0]])
    assert merge_module.merge(output, {"mode": "predict"}) == 1
    assert completed(output) == {"/data/a.npy": "abc"}


def test_a_lock_file_it_may_not_write_is_opened_read_only(tmp_path, monkeypatch):
    """Another user's lock file: opened read-only and locked (local flock needs no write
    permission), no warning; a folder where no lock file can be made: merged unlocked, warned."""
    real_open = os.open

    def no_write(path, flags, *mode):
        if str(path).endswith(".lock") and flags & (os.O_RDWR | os.O_WRONLY):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, flags, *mode)

    (tmp_path / ".out.h5.lock").touch()
    monkeypatch.setattr(os, "open", no_write)
    monkeypatch.setattr(merge_module, "_warned_unlocked", False)
    output = tmp_path / "out.h5"
    finished_part(output, "/data/a.npy", [[1.0, 0.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert merge(output, {"mode": "predict"}) == 1
    other = tmp_path / "other.h5"
    finished_part(other, "/data/b.npy", [[1.0, 0.0]])
    with pytest.warns(UserWarning, match=r"\.other\.h5\.lock: cannot lock .*Permission denied"):
        assert merge(other, {"mode": "predict"}) == 1


class Stderr(io.StringIO):
    """sys.stderr that tells when something was written."""

    def __init__(self) -> None:
        super().__init__()
        self.written = threading.Event()

    def write(self, text: str) -> int:
        self.written.set()
        return super().write(text)


def test_a_merge_waiting_for_the_lock_says_so_once(tmp_path, monkeypatch):
    output = tmp_path / "out.h5"
    finished_part(output, "/data/a.npy", [[1.0, 0.0]])
    stderr = Stderr()
    monkeypatch.setattr(sys, "stderr", stderr)
    held = os.open(tmp_path / ".out.h5.lock", os.O_RDONLY | os.O_CREAT)
    fcntl.flock(held, fcntl.LOCK_EX)  # another merge of out.h5
    counts = []
    waiting = threading.Thread(
        target=lambda: counts.append(merge(output, {"mode": "predict"})), daemon=True
    )
    waiting.start()
    try:
        assert stderr.written.wait(60)
        assert not output.exists()  # it waits
    finally:
        os.close(held)
    waiting.join(60)
    assert counts == [1]
    assert stderr.getvalue() == f"waiting for another merge of {output}\n"


class Ranks:
    """The strategy as one rank of `world` sees it: at each exchange the other ranks' errors
    (`others`: one {rank: error text} an exchange, in order, or an exception the exchange
    raises: a peer gone); `told` keeps what it sent."""

    def __init__(self, world: int, others: list[dict[int, str] | Exception]) -> None:
        self.world, self.others, self.told = world, others, []
        self.root_device, self.launcher = torch.device("cpu"), None

    def reduce(self, flags: torch.Tensor, reduce_op: str) -> torch.Tensor:
        assert reduce_op == "sum" and len(flags) == self.world
        self.told.append(flags.tolist())
        self.errors = self.others.pop(0)
        if isinstance(self.errors, Exception):
            raise self.errors
        return flags + torch.tensor([float(rank in self.errors) for rank in range(self.world)])

    def broadcast(self, text: str, src: int) -> str:
        return self.errors.get(src, text)


def end_of_run(output: Path, rank: int, others: list[dict[int, str] | Exception]) -> tuple:
    """A writer of `rank` (of 2) with one finished recording not committed yet, at the end."""
    writer = rank_writer(output, 1, "predict", commit_seconds=3600)
    writer.write_on_batch_end(None, SimpleNamespace(), fake_batch(0), None, None, 0)
    strategy = Ranks(2, others)
    trainer = SimpleNamespace(
        strategy=strategy, world_size=2, global_rank=rank, is_global_zero=rank == 0
    )
    return writer, trainer, strategy


FULL = "OSError: [Errno 28] No space left on device: 'rank-1'"


def test_rank_0_learns_that_rank_1_could_not_commit_and_merges_its_own(tmp_path):
    output = tmp_path / "out.h5"
    writer, trainer, strategy = end_of_run(output, 0, [{1: FULL}, {}])
    with pytest.raises(OSError) as raised:
        writer.on_predict_end(trainer, None)
    message = str(raised.value)
    assert message.startswith(f"committing finished recordings failed on rank 1 ({FULL}); ")
    assert f"{output} holds what was committed (marked incomplete)" in message
    assert strategy.told == [[0, 0], [0, 0]]
    writer.on_exception(trainer, None, raised.value)  # what Lightning calls next: no 2nd merge
    with h5py.File(output, "r") as file:
        assert not file.attrs["complete"] and len(json.loads(file.attrs["runs"])) == 1
        assert list(file["recordings/path"].asstr()) == ["/data/0.npy"]


def test_a_rank_whose_commit_fails_tells_the_others_before_it_raises(tmp_path, monkeypatch):
    """Rank 1's disk is full: it still meets the others at both exchanges (else they would
    wait for it until the process group's timeout), then raises naming itself."""
    output = tmp_path / "out.h5"
    writer, trainer, strategy = end_of_run(output, 1, [{}, {}])
    full = OSError(errno.ENOSPC, "No space left on device", "rank-1")

    def full_disk(folder, parts):
        raise full

    monkeypatch.setattr(writer_module, "commit_parts", full_disk)
    with pytest.raises(OSError) as raised:
        writer.on_predict_end(trainer, None)
    assert strategy.told == [[0, 1], [0, 0]]
    assert str(raised.value).startswith(f"committing finished recordings failed on rank 1 ({FULL})")
    assert raised.value.__cause__ is full
    assert not output.exists()  # rank 0 merges


def test_a_rank_that_cannot_close_its_files_tells_the_others_before_it_raises(
    tmp_path, monkeypatch
):
    """Rank 1 cannot close an unfinished recording's file at the end: it still meets the
    others at both exchanges, with what it committed on disk."""
    output = tmp_path / "out.h5"
    writer, trainer, strategy = end_of_run(output, 1, [{}, {}])
    writer.tasks[1] = RecordingTask(1, "/data/1.npy")
    unfinished = {**fake_batch(1), "finished": []}
    writer.write_on_batch_end(None, SimpleNamespace(), unfinished, None, None, 0)
    gone = OSError(errno.EIO, "Input/output error", "spill")

    def failing(part):
        raise gone

    monkeypatch.setattr(RecordingPart, "abandon", failing)
    with pytest.raises(OSError) as raised:
        writer.on_predict_end(trainer, None)
    assert strategy.told == [[0, 1], [0, 0]]
    assert raised.value.__cause__ is gone
    assert completed(output) == {"/data/0.npy": "s0"}


def test_a_peer_lost_after_rank_0_merged_does_not_make_it_merge_again(tmp_path, monkeypatch):
    """The second exchange fails (rank 1 died): Lightning's on_exception follows, and must not
    merge over the finished merge with complete=False."""
    output = tmp_path / "out.h5"
    lost = RuntimeError("Connection closed by peer")
    writer, trainer, strategy = end_of_run(output, 0, [{}, lost])
    merges = []

    def counting(output, metadata, complete):
        merges.append(complete)
        return merge(output, metadata, complete)

    monkeypatch.setattr(writer_module, "merge", counting)
    with pytest.raises(RuntimeError) as raised:
        writer.on_predict_end(trainer, None)
    writer.on_exception(trainer, None, raised.value)
    assert merges == [True]
    with h5py.File(output, "r") as file:
        assert file.attrs["complete"] and len(json.loads(file.attrs["runs"])) == 1


def test_a_failed_merge_fails_every_rank_and_keeps_the_parts(tmp_path, monkeypatch):
    output = tmp_path / "out.h5"
    writer, trainer, strategy = end_of_run(output, 0, [{}, {}])

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(writer_module, "merge", full_disk)
    with pytest.raises(OSError, match=r"the parts stay for the next run to merge$") as raised:
        writer.on_predict_end(trainer, None)
    assert str(raised.value).startswith(
        f"merging the parts into {output} failed on rank 0 (OSError: [Errno 28] No space left"
    )
    assert strategy.told == [[0, 0], [1, 0]]
    assert completed(output) == {"/data/0.npy": "s0"}


def test_a_forked_rank_s_error_is_reported_in_one_line(monkeypatch, capsys):
    """ddp_fork: the launcher gets its rank's traceback in a ProcessRaisedException; the command
    reports the rank's error line, exit code 2 (not a recording's failure); another error (a
    bug) keeps its traceback, exit code 1, as it would unforked; a rank killed by a signal
    (ProcessExitedException) is one line and 2."""
    trace = f'Traceback (most recent call last):\n  File "writer.py", line 1, in _commit\n{FULL}\n'

    def forked(args, threads):
        message = f"\n\n-- Process 1 terminated with the following error:\n{trace}"
        raise ProcessRaisedException(message, 1, 4242)

    monkeypatch.setattr(batch, "run", forked)
    assert batch.main(["batch", "--checkpoint", "m.h5", "--inputs", "r", "--output", "o.h5"]) == 2
    assert capsys.readouterr().err == f"eventsnn batch: error: {FULL}\n"

    bug = trace.replace(
        FULL, "RuntimeError: CUDA error: device-side assert triggered\nCompile with"
    )

    def failed(args, threads):
        raise ProcessRaisedException(
            f"\n\n-- Process 0 terminated with the following error:\n{bug}", 0, 1
        )

    monkeypatch.setattr(batch, "run", failed)  # not an error the command reports in a line
    assert batch.main(["batch", "--checkpoint", "m.h5", "--inputs", "r", "--output", "o.h5"]) == 1
    reported = capsys.readouterr().err
    assert reported.startswith("eventsnn batch: error: a process failed:\n-- Process 0")
    assert 'File "writer.py", line 1' in reported and reported.endswith("Compile with\n")

    def killed(args, threads):
        raise ProcessExitedException("process 1 terminated with signal SIGKILL", 1, 9, 9, "SIGKILL")

    monkeypatch.setattr(batch, "run", killed)
    assert batch.main(["batch", "--checkpoint", "m.h5", "--inputs", "r", "--output", "o.h5"]) == 2
    assert capsys.readouterr().err == (
        "eventsnn batch: error: process 1 terminated with signal SIGKILL; what was committed is "
        "kept\n"
    )


FULL_DISK = """# eventsnn batch whose rank 1 finds the disk full when it commits
import errno, sys
sys.path.insert(0, {root!r})
from eventsnn.inference import writer
from pipelines.cli import main
def full_disk(folder, parts):
    if folder.name == "rank-1":
        raise OSError(errno.ENOSPC, "No space left on device", folder.name)
    return commit_parts(folder, parts)
commit_parts, writer.commit_parts = writer.commit_parts, full_disk
sys.exit(main())
"""


@pytest.mark.slow
@pytest.mark.parametrize(
    ("strategy", "reporters", "kind"),
    [("ddp", 2, ""), ("ddp_fork", 1, "OSError: ")],  # each rank; the launcher, for its ranks
)
def test_two_ddp_ranks_fail_together_when_one_cannot_commit(
    tmp_path, capsys, strategy, reporters, kind
):
    """Rank 1's disk full at its last commit: both ranks stop at once naming rank 1's error,
    not at the process group's timeout (30 min; the subprocess is given 5), with what rank 0
    committed merged once; the next run does the rest. Plain ddp (each rank its own
    interpreter) reports on each rank; ddp_fork's launcher reports its ranks' error in a line."""
    checkpoint = make_checkpoint(tmp_path / "model.h5")
    folder = write_recordings(tmp_path / "recordings")
    for name in ("corrupt.npy", "empty.h5", "zero.npy", "zero.npy.json", "sub/wide.npy"):
        (folder / name).unlink()
    script, output = tmp_path / "full_disk.py", tmp_path / "out.h5"
    script.write_text(FULL_DISK.format(root=str(ROOT)))
    args = ["--checkpoint", str(checkpoint), "--inputs", str(folder), "--output", str(output)]
    args += ["--progress", "false", "--threads", "1", "--commit-seconds", "3600"]  # at the end
    result = subprocess.run(
        [sys.executable, str(script), "batch", *args, "--devices", "2", "--strategy", strategy],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2, result.stderr[-2000:]  # an OSError, reported
    error = (
        f"eventsnn batch: error: {kind}committing finished recordings failed on rank 1 "
        f"({FULL}); {output} holds what was committed (marked incomplete): run again"
    )
    assert result.stderr.count(error) == reporters, result.stderr[-2000:]  # two may share a line
    assert result.stderr.count("eventsnn batch: error") == reporters
    assert "Traceback" not in result.stderr
    with h5py.File(output, "r") as file:
        check_tables(file)
        assert not file.attrs["complete"]
        assert [run["complete"] for run in json.loads(file.attrs["runs"])] == [False]
        assert set(file["recordings/rank"][()]) == {0}
        merged = len(file["recordings/path"])
    assert 0 < merged < len(GOOD)
    assert batch.main(["batch", *args]) == 0
    assert "skipped (done before)" in capsys.readouterr().out
    records = list(iter_records(output))
    assert len(records) == len(GOOD) and all(r["status"] == "done" for r in records)
