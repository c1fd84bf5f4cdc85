"""Writing a rank's part files: each recording's window rows, then its /recordings row.

Finished recordings are committed together (`commit_parts`; the writer decides when): one file
with their /recordings rows and their windows one after the other (layout in
`eventsnn.inference.results`; @format, @format_version and the run's @job), written under a
temporary name and renamed into place, so a killed run loses no committed recording and never
leaves a half-written part where a finished one is expected. Parts are not fsynced (the merged
file is): after a power cut an unreadable part is skipped with a warning and its recordings are
redone. A recording whose rows outgrow memory (encoded tensors of a long recording) streams them
to a temporary file of its own, which becomes its part file when it finishes. Part names sort in
commit order: the newest wins.
"""

from __future__ import annotations

import itertools
import json
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from eventsnn.atomic import written_atomically
from eventsnn.inference.results import (
    FORMAT,
    FORMAT_VERSION,
    PIECE_COLUMNS,
    RECORD_COLUMNS,
    RECORDINGS,
    STATUS_DONE,
    STATUS_FAILED,
    WINDOWS,
)
from eventsnn.models.decisions import decide, votes

_sequence = itertools.count()


def new_part_path(folder: Path) -> Path:
    """A new part file name in `folder` that sorts after every earlier one (time, pid, count)."""
    return folder / f"{time.time_ns():020d}-{os.getpid()}-{next(_sequence):06d}.h5"


class RecordingPart:
    """One recording's (or piece of a split recording's) window rows while it is processed,
    then its row of /recordings.

    Rows are kept in memory until the recording finishes and is committed with others
    (`commit_parts`); past `flush_bytes` of buffered rows (encoded tensors of long
    recordings) they go to resizable datasets of a temporary file of its own, so memory stays
    bounded, and that file becomes the recording's part file when it finishes.
    """

    def __init__(
        self,
        folder: Path,
        path: str,
        rank: int = 0,
        flush_bytes: int = 2**24,
        part: int = 0,
        parts: int = 1,
        job: str = "",
    ) -> None:
        self.folder = folder
        self.job = job
        self.record: dict[str, Any] = {**RECORD_COLUMNS, "path": path, "rank": rank}
        self.record.update(part=part, parts=parts)
        self.flush_bytes = flush_bytes
        self.buffered: dict[str, list[np.ndarray]] = {}
        self.buffered_bytes = 0
        self.n_rows = 0
        self.spill: h5py.File | None = None
        self.spill_path = folder / f".{os.getpid()}-{id(self)}-{part}of{parts}.spill.tmp"
        self.layer_names: list[str] = []
        self.probability_sum: np.ndarray | None = None
        self.votes: np.ndarray | None = None
        self.rejected = ""

    def reject(self, error: str) -> None:
        """Fail the recording with `error`: its rows so far are dropped, later ones ignored."""
        self.rejected = self.rejected or error
        self.abandon()
        self.spill = None
        self.buffered, self.buffered_bytes, self.n_rows = {}, 0, 0
        self.probability_sum = self.votes = None

    def append(self, columns: Mapping[str, np.ndarray]) -> None:
        """Add rows (one per window) to the columns named by `columns`."""
        if self.rejected:
            return
        for name, rows in columns.items():
            rows = np.asarray(rows)
            self.buffered.setdefault(name, []).append(rows)
            self.buffered_bytes += rows.nbytes
        self.n_rows += len(next(iter(columns.values()))) if columns else 0
        if "probabilities" in columns:
            self._count(np.asarray(columns["probabilities"]), np.asarray(columns["predicted"]))
        if self.buffered_bytes > self.flush_bytes:
            if self.spill is None:
                self.spill = h5py.File(self.spill_path, "w")
            _append_rows(self.spill.require_group(WINDOWS), self)

    def _count(self, probabilities: np.ndarray, predicted: np.ndarray) -> None:
        """Running sums for the whole-recording mean probability and majority vote."""
        if self.probability_sum is None:
            self.probability_sum = np.zeros(probabilities.shape[1], dtype=np.float64)
            self.votes = np.zeros(probabilities.shape[1], dtype=np.int64)
        self.probability_sum += probabilities.sum(axis=0)
        self.votes += votes(predicted, len(self.votes))

    @property
    def mean_probabilities(self) -> np.ndarray | None:
        """The mean of the rows' class probabilities (None without any)."""
        if self.probability_sum is None:
            return None
        return (self.probability_sum / max(self.n_rows, 1)).astype(np.float32)

    def finish(self, record: Mapping[str, Any], layer_names: list[str]) -> bool:
        """Take the recording's record; return whether it is committed already (own file).

        A recording that streamed to its own file is written and renamed into place now; the
        others wait for `commit_parts`.
        """
        self.record.update({k: v for k, v in record.items() if k in RECORD_COLUMNS})
        self.record["error"] = self.rejected or record.get("error", "")
        self.record["status"] = STATUS_FAILED if self.record["error"] else STATUS_DONE
        if self.probability_sum is not None:
            self.record["predicted"] = int(decide(self.probability_sum))
            self.record["predicted_majority"] = int(decide(self.votes))
        self.layer_names = layer_names
        if self.spill is None:
            return False
        _append_rows(self.spill[WINDOWS], self)
        write_tables(self.spill, [self])
        self.spill.close()
        with written_atomically(new_part_path(self.folder), durable=False) as tmp:
            os.replace(self.spill_path, tmp)
        return True

    def abandon(self) -> None:
        """Close and remove an unfinished recording's own file (the recording will be redone)."""
        if self.spill is not None:
            self.spill.close()
        self.spill_path.unlink(missing_ok=True)


def commit_parts(folder: Path, parts: Sequence[RecordingPart]) -> Path:
    """Write finished recordings into one new part file: all of them or, if killed, none."""
    path = new_part_path(folder)
    # not fsynced: a power cut may lose a part, whose recordings are then redone (`read_part`);
    # two fsyncs cost ~27 ms a commit here, more than the commit itself for small recordings
    with written_atomically(path, durable=False) as tmp, h5py.File(tmp, "w") as file:
        write_tables(file, parts)
    return path


def write_tables(file: h5py.File, parts: Sequence[RecordingPart]) -> None:
    """The parts' /recordings rows and their buffered window rows, one after the other (a
    spilled part's earlier rows are in /windows already: it is alone in its file)."""
    file.attrs.update(format=FORMAT, format_version=FORMAT_VERSION, job=parts[0].job)
    windows = file.require_group(WINDOWS)
    counts = np.array([part.n_rows for part in parts], dtype=np.int64)
    for part, first in zip(parts, np.cumsum(counts) - counts, strict=True):
        part.record["first_window"] = int(first)
        part.record["n_windows"] = part.n_rows
    recordings = file.create_group(RECORDINGS)
    for name, default in {**RECORD_COLUMNS, **dict.fromkeys(PIECE_COLUMNS, 0)}.items():
        put_dataset(recordings, name, column([part.record[name] for part in parts], default))
    means = [part.mean_probabilities for part in parts]
    width = next((len(mean) for mean in means if mean is not None), None)
    if width is not None:
        missing = np.full(width, np.nan, dtype=np.float32)
        put_dataset(recordings, "mean_probabilities", np.stack([missing if m is None else m
                                                               for m in means]))  # fmt: skip
    names = dict.fromkeys(name for part in parts for name in part.buffered)
    for name in names:
        rows = np.concatenate([r for p in parts for r in p.buffered.get(name, [])])
        if len(rows) != counts.sum():  # every window has every column, or rows would shift
            raise ValueError(f"column {name!r}: {len(rows)} rows for {counts.sum()} windows")
        put_dataset(windows, name, rows)
    if "recording" not in windows:
        put_dataset(windows, "recording", np.repeat(np.arange(len(parts)), counts))
    if "firing_rates" in windows:
        windows["firing_rates"].attrs["layer_names"] = json.dumps(parts[0].layer_names)
    for part in parts:
        part.buffered, part.buffered_bytes = {}, 0


def column(values: Sequence[Any], default: Any) -> np.ndarray:
    """A table column of `values`, typed as its `default` is: UTF-8 strings, int64, float64."""
    if isinstance(default, str):
        return np.array(values, dtype=h5py.string_dtype())
    return np.array(values, dtype=np.float64 if isinstance(default, float) else np.int64)


def _append_rows(windows: h5py.Group, part: RecordingPart) -> None:
    """Append a spilling part's buffered rows to resizable datasets of its own file."""
    for name, chunks in part.buffered.items():
        rows = chunks[0] if len(chunks) == 1 else np.concatenate(chunks)
        if name not in windows:
            row_bytes = max(1, rows[0].nbytes if len(rows) else 1)
            windows.create_dataset(
                name,
                shape=(0, *rows.shape[1:]),
                maxshape=(None, *rows.shape[1:]),
                dtype=rows.dtype,
                chunks=(max(1, min(1024, 2**20 // row_bytes)), *rows.shape[1:]),
            )
        dataset = windows[name]
        n = dataset.shape[0]
        dataset.resize(n + len(rows), axis=0)
        dataset[n:] = rows
    part.buffered, part.buffered_bytes = {}, 0


# A run over many small recordings writes a few dozen datasets a batch: h5py's low-level calls
# create one in about a third of the time of its high-level ones, with the same types on
# reading (UTF-8 strings, int64, float64).
def put_dataset(group: h5py.Group, name: str, data: np.ndarray) -> None:
    """``group[name] = data`` (a new, contiguous dataset) through h5py's low-level API."""
    data = np.ascontiguousarray(data)
    kind = h5py.h5t.py_create(data.dtype, logical=True)
    dataset = h5py.h5d.create(group.id, name.encode(), kind, h5py.h5s.create_simple(data.shape))
    if data.size:
        dataset.write(h5py.h5s.ALL, h5py.h5s.ALL, data)
