"""The rank-0 merge: the previous results file and every rank's part files into one new file.

The new file is written beside the output and renamed over it, so the output is at every moment
either the previous complete file or the new one; the merged parts are removed only afterwards.
A recording found in several files is taken from its newest part, else from the previous file,
unless that newest result is a failure to read the file at all and an older one exists; the
pieces of a split recording are joined into one row once all of them are there. Rows whose
windows have other columns than the results' (encoded frames sized by each window) fail. Window rows
are copied a run of consecutive rows at a time, ~16 MB a copy, so a merge costs a few dozen
HDF5 calls a part file whatever the number of recordings in it. After an interruption the merge
takes the committed parts and leaves the others' unfinished ones alone; a merge that finds no part
file leaves an existing output as it is. A lock on a hidden file beside the output serialises its
merges: an interrupted launcher's merge waits for its forked rank 0's, then finds no part file
left, and the output is as rank 0 wrote it. One output is for one run at a time: the lock does not
make two runs writing it safe (a complete merge removes the parts folder, the other run's too).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import sys
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import groupby
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from eventsnn.atomic import temporaries, written_atomically
from eventsnn.inference.parts import column
from eventsnn.inference.results import (
    FORMAT,
    FORMAT_VERSION,
    PIECE_COLUMNS,
    RECORD_COLUMNS,
    RECORDINGS,
    STATUS_FAILED,
    WINDOWS,
    Tables,
    part_files,
    parts_dir,
    read_output,
    read_part,
)
from eventsnn.models.decisions import decide, votes

COPY_BYTES = 2**24
"""Window rows copied at a time (encoded windows of a long recording may not fit in memory)."""


@dataclass
class Source:
    """A results or part file's tables and the rows of its /recordings the merge takes."""

    tables: Tables
    taken: list[int] = field(default_factory=list)

    @property
    def records(self) -> dict[str, np.ndarray]:
        return self.tables.records


Schema = dict[str, tuple[np.dtype, tuple[int, ...]]]
"""The windows' columns: name -> (dtype, shape of a row)."""
Piece = tuple[Source, int]
"""A row of a source's /recordings table."""
Candidate = Piece | list[Piece]
"""A recording's result in one place: a row, or the complete pieces of a split recording."""


def merge(output: str | os.PathLike, metadata: Mapping[str, Any], complete: bool = True) -> int:
    """Merge parts into `output` with this run's `metadata`; return the number of recordings.

    `complete` (every rank has finished) removes the whole parts folder, unfinished parts of
    killed runs included; otherwise only the committed part files are removed, with the pieces
    of split recordings not all there (those recordings are redone whole). With no part file
    an output this same run (its @started_unix) merged last is left as it is, with no second
    entry in its runs: a forked launcher's merge after its rank 0's.
    """
    output = Path(output)
    with _merging(output):
        parts = part_files(output)
        count = None if parts else _merged_by(output, metadata.get("started_unix"))
        if count is None:
            count = _rewrite(output, parts, metadata)
        if complete:
            shutil.rmtree(parts_dir(output), ignore_errors=True)
        for path in parts:
            path.unlink(missing_ok=True)
    return count


def _merged_by(output: Path, started: float | None) -> int | None:
    """The number of recordings of an existing output whose last merge was the run started at
    `started` (unix time), else None: the output must be rewritten for this run."""
    if started is None or not output.exists():
        return None
    with h5py.File(output, "r") as file:
        runs = json.loads(file.attrs.get("runs", "[]"))
        if not runs or runs[-1].get("started_unix") != started:
            return None
        return len(file[RECORDINGS]["path"])


def _rewrite(output: Path, parts: Sequence[Path], metadata: Mapping[str, Any]) -> int:
    """Write the previous output and `parts` into a new output (renamed over the old one), with
    `metadata` added to its runs; return the number of recordings."""
    sources, joined, runs = _select(output, parts)
    for stale in temporaries(output):
        stale.unlink(missing_ok=True)  # what a merge killed mid-way left (one at a time)
    # durable: the parts are deleted once the merged file is in place
    with written_atomically(output) as tmp, h5py.File(tmp, "w") as target:
        count = _write(target, sources, joined)
        target.attrs["format"] = FORMAT
        target.attrs["format_version"] = FORMAT_VERSION
        for name, value in metadata.items():
            target.attrs[name] = (
                value if isinstance(value, str | int | float) else json.dumps(value)
            )
        target.attrs["runs"] = json.dumps([*runs, dict(metadata)])
    return count


UNLOCKABLE = {
    errno.ENOSYS,
    errno.ENOLCK,
    errno.EOPNOTSUPP,
    errno.ENOTSUP,
    errno.EINVAL,
    errno.EBADF,
    errno.EACCES,
    errno.EROFS,
}
"""Errors where the output's folder or filesystem cannot lock: Lustre without -o flock, NFS
without lockd or (EBADF) a lock file opened read-only, a folder that is not writable."""
_warned_unlocked = False
"""Whether this process warned that a merge went on without the lock (once is enough)."""


@contextmanager
def _merging(output: Path) -> Iterator[None]:
    """Hold the output's merge lock: an exclusive flock on a hidden file beside it, left there
    (removed, a waiting merge would hold a lock on a file the next one no longer sees)."""
    output.parent.mkdir(parents=True, exist_ok=True)
    lock = output.with_name(f".{output.name}.lock")
    try:
        fd = _open_lock(lock)
    except OSError as error:
        if error.errno not in UNLOCKABLE:
            raise
        _unlocked(lock, error)
        yield
        return
    try:
        _lock(fd, output, lock)
        yield  # released when the file closes, or the process dies
    finally:
        os.close(fd)


def _open_lock(lock: Path) -> int:
    """The lock file, opened for writing where it can be (NFS emulates flock with byte-range
    locks, which need it), else read-only (another user's lock file: local flock needs no
    write permission)."""
    try:
        return os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
    except PermissionError as error:
        try:
            return os.open(lock, os.O_RDONLY)
        except FileNotFoundError:  # a folder it cannot create the lock file in
            raise error from None


def _lock(fd: int, output: Path, lock: Path) -> None:
    """Lock `fd` (the lock file `lock`) exclusively, saying on stderr that this merge waits if
    another holds it. Where the filesystem cannot lock (with a warning, once) or there is no
    flock (Windows), the merge goes on unlocked."""
    try:
        import fcntl
    except ImportError:  # Windows
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"waiting for another merge of {output}", file=sys.stderr, flush=True)
            fcntl.flock(fd, fcntl.LOCK_EX)
    except OSError as error:
        if error.errno not in UNLOCKABLE:
            raise
        _unlocked(lock, error)


def _unlocked(lock: Path, error: OSError) -> None:
    """Warn (once a process) that merges go on without the lock."""
    global _warned_unlocked
    if not _warned_unlocked:
        _warned_unlocked = True
        warnings.warn(
            f"{lock}: cannot lock ({error}); merging without the lock (merges of one output "
            "must then not run at once)",
            stacklevel=3,
        )


def _select(output: Path, parts: Sequence[Path]) -> tuple[list[Source], list[list[Piece]], list]:
    """The sources in writing order (previous file, then parts oldest first) with the rows each
    gives, the complete sets of pieces to join, and the previous runs' metadata.

    A recording's newest result wins, unless it is a failure to read the file at all (no
    checksum: e.g. a share that was away) and an older result exists: that one is kept.
    """
    candidates: dict[str, list[Candidate]] = {}  # newest first
    pieces: dict[tuple[str, int, str], dict[int, Piece]] = {}
    newest_first = []
    for path in reversed(parts):
        tables = read_part(path)
        if tables is None:
            continue
        source = Source(tables)
        records = source.records
        for row, name in enumerate(records["path"]):
            count = int(records["parts"][row])
            if count == 1:
                candidates.setdefault(name, []).append((source, row))
                continue
            found = pieces.setdefault((name, count, records["checksum"][row]), {})
            number = int(records["part"][row])
            if number in found:  # the newest of each piece is kept
                continue
            found[number] = (source, row)
            if len(found) == count:
                candidates.setdefault(name, []).append([found[k] for k in sorted(found)])
        newest_first.append(source)
    sources, runs = newest_first[::-1], []
    if output.exists():
        previous = Source(read_output(output))
        with h5py.File(output, "r") as file:
            runs = json.loads(file.attrs.get("runs", "[]"))
        for row, name in enumerate(previous.records["path"]):
            candidates.setdefault(name, []).append((previous, row))
        sources.insert(0, previous)
    joined = []
    for options in candidates.values():
        chosen = next((option for option in options if not _unread(option)), options[0])
        if isinstance(chosen, list):
            joined.append(chosen)
        else:
            chosen[0].taken.append(chosen[1])
    for source in sources:
        source.taken.sort()
    return sources, joined, runs


def _unread(candidate: Candidate) -> bool:
    """Whether the result is a failure to read the recording's file at all (every piece of a
    split one)."""
    if isinstance(candidate, list):
        return all(_unread(piece) for piece in candidate)
    source, row = candidate
    return source.records["status"][row] == STATUS_FAILED and not source.records["checksum"][row]


def _write(target: h5py.File, sources: Sequence[Source], joined: Sequence[list[Piece]]) -> int:
    """Write the taken rows of `sources`, then the joined pieces; return the recordings count.

    A set of rows (a source's taken rows, or the pieces of a split recording) with a source
    whose windows do not fit the results' columns fails whole and gives no window rows: the
    table's rows are counted from the same sets that are copied.
    """
    schema, misfits = _schema(sources, joined)
    sets = [([(s, row) for row in s.taken], False) for s in sources if s.taken]
    sets += [(_until_failure(pieces), True) for pieces in joined]
    why = [_misfit(pieces, misfits, schema) for pieces, _ in sets]  # None: copied
    copied = [pieces for (pieces, _), reason in zip(sets, why, strict=True) if reason is None]
    total = sum(int(s.records["n_windows"][row]) for pieces in copied for s, row in pieces)
    windows = target.create_group(WINDOWS)
    for name, (dtype, shape) in {**schema, "recording": (np.int64, ())}.items():
        windows.create_dataset(name, shape=(total, *shape), dtype=dtype)
    layer_names = next((s.tables.layer_names for s in sources if s.tables.layer_names), None)
    if layer_names is not None and "firing_rates" in windows:
        windows["firing_rates"].attrs["layer_names"] = layer_names
    tables: list[dict[str, np.ndarray]] = []
    at = 0
    for (pieces, split), reason in zip(sets, why, strict=True):
        source, rows = pieces[0][0], np.array([row for _, row in (pieces[:1] if split else pieces)])
        table = {k: v[rows] for k, v in source.records.items() if k not in PIECE_COLUMNS}
        if reason is not None:
            tables.append(_failed(table, reason, at))
            continue
        start, at = at, _copy_windows(pieces, windows, at)
        tables.append(_join(table, pieces, windows, start, at) if split else _placed(table, start))
    return _write_records(target, tables, schema)


def _until_failure(pieces: Sequence[Piece]) -> Sequence[Piece]:
    """A split recording's pieces up to the first that failed: an unsplit run stops reading
    at the error and keeps the windows before it, so later pieces' windows are not results
    (else a recording's results would depend on the number of processes)."""
    failed = (i for i, (s, row) in enumerate(pieces) if s.records["status"][row] == STATUS_FAILED)
    return pieces[: next(failed, len(pieces) - 1) + 1]


def _misfit(pieces: Sequence[Piece], misfits: set[int], schema: Schema) -> str | None:
    """Why the rows `pieces` cannot join the results' table (the windows of a source, the first
    of them among `misfits`, have other columns), or None if they can."""
    source = next((s for s, _ in pieces if id(s) in misfits), None)
    if source is None:
        return None
    return (
        f"its windows' columns in {source.tables.path.name} ({_describe(source.tables.schema)}) "
        f"differ from the results' ({_describe(schema)}): one results file holds one shape "
        "(e.g. give the transform a fixed sensor size)"
    )


def _failed(table: dict[str, np.ndarray], why: str, at: int) -> dict[str, np.ndarray]:
    """The table's rows as failures (`why`, after each path) without windows, at row `at`."""
    paths = table["path"]
    table = {k: v for k, v in table.items() if k != "mean_probabilities"}
    table["status"] = np.full(len(paths), STATUS_FAILED, dtype=object)
    table["error"] = np.array([f"{path}: {why}" for path in paths], dtype=object)
    table["n_windows"] = np.zeros(len(paths), dtype=np.int64)
    table["first_window"] = np.full(len(paths), at, dtype=np.int64)
    table["predicted"] = table["predicted_majority"] = np.full(len(paths), -1, dtype=np.int64)
    return table


def _schema(sources: Sequence[Source], joined: Sequence[list[Piece]]) -> tuple[Schema, set[int]]:
    """The windows' columns (the first source with rows to give: the previous output's if it
    has any) and the ids of the sources whose columns differ: their recordings fail (encoded
    frames sized by each window, another rank's or run's shape), the others are merged."""
    givers = [s for s in sources if s.records["n_windows"][s.taken].sum() > 0]
    givers += [s for pieces in joined for s, row in pieces if s.records["n_windows"][row] > 0]
    if not givers:
        return {}, set()
    schema = givers[0].tables.schema
    return schema, {id(s) for s in givers if s.tables.schema != schema}


def _describe(schema: Schema) -> str:
    return ", ".join(f"{name} {dtype}{list(shape)}" for name, (dtype, shape) in schema.items())


def _runs(first: np.ndarray, counts: np.ndarray) -> Iterator[tuple[int, int]]:
    """[start, stop) row ranges of consecutive windows of rows (first, count), in order."""
    start = stop = None
    for begin, count in zip(first.tolist(), counts.tolist(), strict=True):
        if count == 0:
            continue
        if begin != stop:
            if start is not None:
                yield start, stop
            start = begin
        stop = begin + count
    if start is not None:
        yield start, stop


def _copy(source: h5py.Group, start: int, stop: int, target: h5py.Group, at: int) -> None:
    """Rows [start, stop) of every column of `target`'s table from `source`'s, to row `at`; the
    recording column is `_write_records`' (rows of /recordings change)."""
    for name, dataset in target.items():
        if name == "recording":
            continue
        column = source[name]
        step = max(1, COPY_BYTES // max(1, column.dtype.itemsize * int(np.prod(column.shape[1:]))))
        for begin in range(start, stop, step):
            end = min(stop, begin + step)
            dataset[at + begin - start : at + end - start] = column[begin:end]


def _copy_windows(pieces: Sequence[Piece], windows: h5py.Group, at: int) -> int:
    """Copy the windows of the rows `pieces` (in order) to row `at` of `windows`, a run of
    consecutive rows of one file at a time; return the row after them."""
    for _, group in groupby(pieces, key=lambda piece: id(piece[0])):
        group = list(group)
        source, rows = group[0][0], [row for _, row in group]
        counts = source.records["n_windows"][rows]
        if not counts.any():
            continue
        with h5py.File(source.tables.path, "r") as file:
            for start, stop in _runs(source.records["first_window"][rows], counts):
                _copy(file[WINDOWS], start, stop, windows, at)
                at += stop - start
    return at


def _placed(table: dict[str, np.ndarray], at: int) -> dict[str, np.ndarray]:
    """The table's rows with their windows copied one after the other from row `at`."""
    counts = table["n_windows"]
    table["first_window"] = at + np.cumsum(counts) - counts
    return table


def _join(
    table: dict[str, np.ndarray], pieces: Sequence[Piece], windows: h5py.Group, start: int, at: int
) -> dict[str, np.ndarray]:
    """The one /recordings row of a split recording (`table`: its first piece's row) whose
    pieces' windows are rows [start, at), as an unsplit run writes it: counts summed,
    predictions over all rows."""
    record = {name: table[name][0] for name in RECORD_COLUMNS}
    for name, join in (("n_windows", sum), ("n_events", max), ("seconds", sum)):
        record[name] = join(source.records[name][row] for source, row in pieces)
    failed = [(s, row) for s, row in pieces if s.records["status"][row] == STATUS_FAILED]
    if failed:
        record["status"] = STATUS_FAILED
        record["error"] = failed[0][0].records["error"][failed[0][1]]
    record["first_window"] = start
    record["predicted"] = record["predicted_majority"] = -1
    table = {name: np.array([value]) for name, value in record.items()}
    if "probabilities" in windows:
        mean = np.full(windows["probabilities"].shape[1], np.nan, dtype=np.float32)
        if at > start:
            total = windows["probabilities"][start:at].astype(np.float64).sum(axis=0)
            mean = (total / (at - start)).astype(np.float32)
            counts = votes(windows["predicted"][start:at], len(mean))
            table["predicted"] = np.array([decide(total)])  # as an unsplit run's sum decides
            table["predicted_majority"] = np.array([decide(counts)])
        table["mean_probabilities"] = mean[None]
    return table


def _write_records(
    target: h5py.File,
    tables: Sequence[Mapping[str, np.ndarray]],
    schema: Schema,
) -> int:
    """The /recordings table and the windows' recording column (their rows in it)."""
    recordings = target.create_group(RECORDINGS)
    for name, default in RECORD_COLUMNS.items():
        values = np.concatenate([t[name] for t in tables]) if tables else []
        recordings.create_dataset(name, data=column(values, default))
    count = len(recordings["path"])
    if "probabilities" in schema:
        width = schema["probabilities"][1][0]
        empty = np.full((0, width), np.nan, dtype=np.float32)
        means = [
            t.get("mean_probabilities", np.full((len(t["path"]), width), np.nan, np.float32))
            for t in tables
        ]
        recordings.create_dataset("mean_probabilities", data=np.concatenate([empty, *means]))
    recording = target[WINDOWS]["recording"]
    at = 0
    firsts = np.cumsum([0] + [len(table["path"]) for table in tables])
    for row, table in zip(firsts, tables, strict=False):
        rows = np.repeat(np.arange(row, row + len(table["path"])), table["n_windows"])
        recording[at : at + len(rows)] = rows  # a table at a time: 8 bytes a window in memory
        at += len(rows)
    return count
