"""Faults between ranks at the end of a run: two merges of one output at once."""

from __future__ import annotations

import importlib
import json
import threading
from pathlib import Path

import h5py
from test_batch_cli import check_tables
from test_batch_results import finished_part

from eventsnn.inference import iter_records, merge, parts_dir

merge_module = importlib.import_module("eventsnn.inference.merge")  # not the function merge


def test_two_merges_of_one_output_take_turns(tmp_path, monkeypatch):
    """Ctrl-C as a forked rank 0 merges: its launcher merges too. The second merge waits for
    the first instead of reading parts the first removes under it (it gets a second to try)."""
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
            merge(output, {"mode": "predict", "complete": complete}, complete)
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
        assert [run["complete"] for run in json.loads(file.attrs["runs"])] == [True, False]
    assert not parts_dir(output).exists()
