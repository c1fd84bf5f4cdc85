"""`eventsnn batch` killed mid-run (SIGKILL, SIGINT, SIGTERM) loses nothing finished; two DDP ranks
on CPU.

The command runs in a subprocess over enough recordings to be caught mid-way: the test waits
until some recordings are finished, kills it, checks what is on disk, and re-runs to completion.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from test_batch_cli import (
    GOOD,
    SENSOR,
    check_tables,
    make_checkpoint,
    random_events,
    recordings_of,
    write_recordings,
)

from eventsnn.events import write
from eventsnn.inference import iter_records, parts_dir
from eventsnn.inference.dataset import plan_tasks
from pipelines import batch

ROOT = Path(__file__).parents[1]
N_RECORDINGS = 50  # enough that a loaded machine still catches the run mid-way


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> dict[str, Path]:
    """A checkpoint and N_RECORDINGS recordings of 20 windows each."""
    root = tmp_path_factory.mktemp("kill")
    folder = root / "recordings"
    folder.mkdir()
    for i in range(N_RECORDINGS):
        write(folder / f"r{i:02d}.npy", random_events(i, 4000, 200_000), SENSOR)
    return {"root": root, "checkpoint": make_checkpoint(root / "model.h5"), "folder": folder}


def command(setup: dict[str, Path], output: Path, *extra: str) -> list[str]:
    return [
        *(sys.executable, "-m", "pipelines.cli", "batch"),
        *("--checkpoint", str(setup["checkpoint"]), "--inputs", str(setup["folder"])),
        *("--output", str(output), "--batch-size", "1", "--progress", "false", "--threads", "1"),
        *(
            "--commit-seconds",
            "0",
        ),  # every batch: a kill finds parts written recording by recording
        *extra,
    ]


def finished_parts(output: Path) -> list[Path]:
    return list(parts_dir(output).glob("rank-*/*.h5"))


def start(setup: dict[str, Path], output: Path, *extra: str) -> subprocess.Popen:
    """Start the command in a process group of its own; return once 3 part files are committed."""
    process = subprocess.Popen(
        command(setup, output, *extra),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while len(finished_parts(output)) < 3 and process.poll() is None:
        assert time.monotonic() < deadline, "the run never finished a recording"
        time.sleep(0.02)
    return process


def finish(process: subprocess.Popen) -> subprocess.CompletedProcess:
    """Wait for the command's end (kill its process group if it does not end)."""
    try:
        out, err = process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)  # no process left behind by a failing test
        raise
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def start_and_stop(
    setup: dict[str, Path], output: Path, sig: int, *extra: str
) -> subprocess.CompletedProcess:
    """Start the command, wait for 3 committed part files, send `sig`, wait for the end."""
    process = start(setup, output, *extra)
    process.send_signal(sig)
    return finish(process)


def children(pid: int) -> list[int]:
    """The processes `pid`'s main thread started (forked ranks), oldest first (Linux's /proc)."""
    return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def assert_resumes(setup: dict[str, Path], output: Path, done_before: int, capsys) -> None:
    """A re-run skips what was finished and completes the rest, each recording once."""
    assert batch.main([*command(setup, output)[3:]]) == 0
    table = capsys.readouterr().out
    skipped = int(re.search(r"skipped \(done before\)\s+(\d+)", table).group(1))
    assert skipped >= done_before
    records = list(iter_records(output))
    assert len(records) == len({r["path"] for r in records}) == N_RECORDINGS
    assert all(r["status"] == "done" and r["n_windows"] == 20 for r in records)
    assert not parts_dir(output).exists()


@pytest.mark.slow
@pytest.mark.parametrize("batch_size", ["1", "45"])  # one recording a commit; two or three
def test_sigkill_loses_nothing_finished(setup, capsys, batch_size):
    output = setup["root"] / f"killed-{batch_size}.h5"
    result = start_and_stop(setup, output, signal.SIGKILL, "--batch-size", batch_size)
    assert result.returncode == -signal.SIGKILL
    finished = list(iter_records(output))  # every finished part is a readable file
    assert 3 <= len(finished) < N_RECORDINGS
    assert all(r["status"] == "done" and r["n_windows"] == 20 for r in finished)
    assert_resumes(setup, output, len(finished), capsys)


@pytest.mark.slow
@pytest.mark.parametrize(
    "extra",  # read in the main thread, or a background one; two ranks forked from the parent
    [("--readers", "0"), ("--readers", "1"), ("--devices", "2", "--strategy", "ddp_fork")],
    ids=["main-thread", "reader-thread", "forked-ranks"],
)
def test_sigint_merges_what_was_finished(setup, capsys, extra):
    """SIGINT to the command's process alone (forked ranks too stop: they do not finish all)."""
    output = setup["root"] / f"interrupted-{'-'.join(extra)}.h5"
    result = start_and_stop(setup, output, signal.SIGINT, *extra)
    assert result.returncode == 128 + signal.SIGINT, result.stderr[-2000:]
    assert f"eventsnn batch: interrupted (Ctrl-C); {output} holds" in result.stderr
    with h5py.File(output, "r") as file:  # merged on the way out, readable
        check_tables(file)
        merged = len(file["recordings/path"])
        assert 3 <= merged < N_RECORDINGS
    assert_resumes(setup, output, merged, capsys)


@pytest.fixture(scope="module")
def clean(setup) -> Path:
    """The results of an uninterrupted run."""
    output = setup["root"] / "clean.h5"
    assert batch.main(command(setup, output)[3:]) == 0
    return output


def assert_same_results(output: Path, clean: Path) -> None:
    """`output` holds the recordings of `clean`, with the same results and windows."""
    ours, theirs = recordings_of(output), recordings_of(clean)
    assert sorted(ours) == sorted(theirs)
    for path, record in theirs.items():
        other = ours[path]
        for name in ("status", "n_events", "n_windows", "predicted", "predicted_majority"):
            assert other[name] == record[name], name
        for name, rows in record["windows"].items():
            if name != "recording":  # rows of /recordings in the files' orders
                np.testing.assert_allclose(other["windows"][name], rows, atol=1e-6, err_msg=name)


FORKED = ("--devices", "2", "--strategy", "ddp_fork")
WORKERS = ("--num-workers", "2")  # data-loader worker processes: a group SIGTERM reaches them


@pytest.mark.slow
@pytest.mark.parametrize(
    ("extra", "to"),  # `to`: the command's process; the last forked rank; all (SLURM, systemd)
    [
        (("--readers", "0"), "command"),
        (("--readers", "1"), "command"),
        (FORKED, "command"),
        (FORKED, "one-rank"),
        (FORKED, "all"),
        (WORKERS, "all"),
    ],
    ids=[
        "main-thread",
        "reader-thread",
        "forked-parent",
        "forked-one-rank",
        "forked-all",
        "workers-all",
    ],
)
def test_sigterm_stops_as_ctrl_c_does_and_resumes(setup, clean, capsys, extra, to):
    """SIGTERM (kill, a scheduler's preemption, docker stop) mid-run: exit code 143, no rank left
    running, the finished recordings merged once into a readable output marked incomplete; a
    re-run completes it as an uninterrupted run, and puts the SIGTERM handler it found back."""
    output = setup["root"] / f"terminated-{to}-{'-'.join(extra)}.h5"
    process = start(setup, output, *extra)
    ranks = children(process.pid)  # forked ranks, or data-loader workers
    assert len(ranks) == (2 if extra in (FORKED, WORKERS) else 0)
    if to == "all":
        os.killpg(process.pid, signal.SIGTERM)
    else:
        os.kill(ranks[-1] if to == "one-rank" else process.pid, signal.SIGTERM)
    result = finish(process)
    assert result.returncode == 128 + signal.SIGTERM, result.stderr[-2000:]
    assert f"eventsnn batch: terminated (SIGTERM); {output} holds" in result.stderr
    assert [pid for pid in ranks if Path(f"/proc/{pid}").exists()] == []  # all reaped
    with h5py.File(output, "r") as file:
        check_tables(file)
        assert not file.attrs["complete"]
        assert len(json.loads(file.attrs["runs"])) == 1  # merged once
        merged = len(file["recordings/path"])
    assert 3 <= merged < N_RECORDINGS

    def kept(signum, frame):  # the handler a caller of the command had set
        pass

    previous = signal.signal(signal.SIGTERM, kept)
    try:
        assert_resumes(setup, output, merged, capsys)
        assert signal.getsignal(signal.SIGTERM) is kept
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert_same_results(output, clean)


@pytest.mark.slow
def test_two_ddp_ranks_equal_one_process(tmp_path):
    checkpoint = make_checkpoint(tmp_path / "model.h5")
    folder = write_recordings(tmp_path / "recordings")
    for name in ("corrupt.npy", "empty.h5", "zero.npy", "zero.npy.json", "sub/wide.npy"):
        (folder / name).unlink()
    outputs = {}
    for devices in (1, 2):
        output = outputs[devices] = tmp_path / f"ddp{devices}.h5"
        args = ["--checkpoint", str(checkpoint), "--inputs", str(folder), "--output", str(output)]
        args += ["--devices", str(devices), "--strategy", "ddp" if devices == 2 else "auto"]
        result = subprocess.run(
            [sys.executable, "-m", "pipelines.cli", "batch", *args, "--progress", "false"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, result.stderr[-2000:]
    one, two = recordings_of(outputs[1]), recordings_of(outputs[2])
    assert sorted(one) == sorted(two) and len(two) == len(GOOD)
    assert {record["rank"] for record in two.values()} == {0, 1}
    for path, record in one.items():
        np.testing.assert_allclose(
            record["windows"]["probabilities"], two[path]["windows"]["probabilities"], atol=1e-6
        )


def fork_run(
    folder: Path, checkpoint: Path, output: Path, *extra: str
) -> tuple[subprocess.CompletedProcess, float]:
    """`eventsnn batch` with two ranks forked from the command's process: (result, wall s)."""
    args = ["--checkpoint", str(checkpoint), "--inputs", str(folder), "--output", str(output)]
    args += ["--devices", "2", "--strategy", "ddp_fork", "--threads", "1", "--progress", "false"]
    args += extra
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "batch", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return result, time.perf_counter() - started


@pytest.mark.slow
def test_two_forked_ranks_equal_one_process_and_resume(tmp_path, capsys):
    """ddp_fork: the parent is no rank; it prints one summary, counts a failure, resumes."""
    checkpoint = make_checkpoint(tmp_path / "model.h5")
    folder = write_recordings(tmp_path / "recordings")
    for name in ("empty.h5", "zero.npy", "zero.npy.json", "sub/wide.npy"):
        (folder / name).unlink()  # left: the good ones and corrupt.npy
    one, two = tmp_path / "one.h5", tmp_path / "fork.h5"
    argv = ["batch", "--checkpoint", str(checkpoint), "--inputs", str(folder), "--output"]
    assert batch.main([*argv, str(one), "--progress", "false", "--threads", "1"]) == 1
    capsys.readouterr()

    result, wall = fork_run(folder, checkpoint, two)
    assert result.returncode == 1, result.stderr[-2000:]  # corrupt.npy failed
    assert len(re.findall(r"^recordings\s+7$", result.stdout, re.MULTILINE)) == 1  # one summary
    assert re.findall(r"^FAILED (.*?):", result.stdout, re.MULTILINE) == [
        str(folder / "corrupt.npy")
    ]
    first, forked = recordings_of(one), recordings_of(two)
    assert sorted(first) == sorted(forked)
    assert {record["rank"] for record in forked.values()} == {0, 1}
    for path, record in first.items():
        other = forked[path]
        assert record["status"] == other["status"]
        if record["status"] == "done":
            np.testing.assert_allclose(
                record["windows"]["probabilities"], other["windows"]["probabilities"], atol=1e-6
            )
    with h5py.File(two, "r") as file:
        check_tables(file)
        assert 0 < file.attrs["predict_seconds"] < file.attrs["seconds"] < wall
    assert not parts_dir(two).exists()

    changed = random_events(99, 1500, 45_000)  # a recording changed since: redone, alone
    write(folder / GOOD[0], changed, SENSOR)
    result, _ = fork_run(folder, checkpoint, two)
    assert result.returncode == 1, result.stderr[-2000:]
    assert re.search(r"^skipped \(done before\)\s+6$", result.stdout, re.MULTILINE)
    records = {Path(r["path"]).name: r for r in iter_records(two)}
    assert len(records) == 7 and records[GOOD[0]]["n_events"] == len(changed)


@pytest.mark.slow
def test_recordings_split_between_forked_ranks_equal_one_process(tmp_path, capsys):
    """--split-mb 1: two recordings of 1 MB or more go whole, one to each rank, and each rank
    reads half of the third; the merged groups are those of one process."""
    checkpoint = make_checkpoint(tmp_path / "model.h5")
    folder = tmp_path / "recordings"
    folder.mkdir()
    for i, (suffix, n) in enumerate(((".es", 1_200_000), (".npy", 600_000), (".h5", 600_000))):
        write(folder / f"long{i}{suffix}", random_events(10 + i, n, 9_000_000), SENSOR)
    paths = sorted(str(path) for path in folder.iterdir() if path.suffix != ".json")
    # all 3 are >= 1 MB (.npy 7.8, .es ~6, .h5 ~2.7): the two largest go whole, one to each
    # rank, and the .h5 is split (splitting the .npy would leave one rank 9.9 MB, not 8.5)
    plan = plan_tasks(paths, 2, 1 << 20)
    assert [(Path(t.path).suffix, t.part, t.parts) for t in plan] == [
        (".npy", 0, 1),
        (".es", 0, 1),
        (".h5", 0, 2),
        (".h5", 1, 2),
    ]
    one, two = tmp_path / "one.h5", tmp_path / "two.h5"
    argv = ["batch", "--checkpoint", str(checkpoint), "--inputs", str(folder), "--threads", "1"]
    assert batch.main([*argv, "--output", str(one), "--progress", "false"]) == 0
    capsys.readouterr()
    result, _ = fork_run(folder, checkpoint, two, "--split-mb", "1")
    assert result.returncode == 0, result.stderr[-2000:]
    whole, split = recordings_of(one), recordings_of(two)
    assert sorted(whole) == sorted(split)
    for path, record in whole.items():
        other = split[path]
        assert sorted(record) == sorted(other) and "parts" not in other
        for name in ("n_windows", "n_events", "status", "predicted", "predicted_majority"):
            assert record[name] == other[name], name
        np.testing.assert_allclose(
            record["mean_probabilities"], other["mean_probabilities"], rtol=1e-6
        )
        assert sorted(record["windows"]) == sorted(other["windows"])
        for name, rows in record["windows"].items():
            if name != "recording":  # rows of /recordings in the files' orders
                np.testing.assert_allclose(rows, other["windows"][name], atol=1e-5, err_msg=name)
    with h5py.File(two, "r") as file:
        check_tables(file)
    ranks = {Path(r["path"]).suffix: r["rank"] for r in iter_records(two)}
    assert ranks[".es"] in (0, 1) and len(ranks) == 3
