"""The batch results file: layout, per-recording part files, resume bookkeeping, checksums.

Final file (one per run, replaced atomically by the merge)::

    /                         @format, @format_version, run metadata (@checkpoint, @versions,
                              @parameters, @seconds since start-up, @predict_seconds since all
                              ranks were ready... JSON where not scalar), @runs (JSON list)
    /recordings/<key>         one group per recording, key = hash of its path
        @path @size @checksum @status ("done" | "failed") @error @n_events @n_windows @seconds
        @rank (the process that wrote it)
        @predicted @predicted_majority  (whole recording: mean probability / majority; -1 if none)
        t_start t_stop first_event n_events index   (n_windows,) int64, window [t_start, t_stop)
        probabilities (n, classes) predicted (n,) spike_counts (n, classes)
        firing_rates (n, layers) @layer_names       (predictions)
        mean_probabilities (classes,)
        encoded (n, T, ...)                          (with --encode-only, instead of predictions)

While running, each rank writes its finished recordings into part files
``<output>.parts/rank-<r>/<time>-<pid>-<n>.h5`` (same ``/recordings/<key>`` layout): the
recordings that finish in a batch are committed together, in one file written under a temporary
name and renamed into place, so a killed run loses no committed recording and never leaves a
half-written part where a finished one is expected. Parts are not fsynced (the merged file is):
after a power cut an unreadable part is skipped with a warning and its recordings are redone.
A recording whose rows outgrow memory (encoded tensors of a long recording) streams them to a
temporary file of its own, which becomes its part file when it finishes. Part names sort in
commit order: the newest wins. A long recording split between processes (`plan_tasks`) is
written as groups ``<key>~<part>of<parts>`` (@part, @parts); the merge joins them into one
group once all are there, and until then none of them counts as done.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import xxhash

from eventsnn.atomic import written_atomically

FORMAT = "eventsnn-batch-results"
FORMAT_VERSION = 2
"""2: a recording's checksum is @checksum, "<algorithm>:<hex digest>" (1: @sha256, hex)."""
RECORDINGS = "recordings"
STATUS_DONE, STATUS_FAILED = "done", "failed"
_RECORD_ATTRS = ("path", "size", "checksum", "status", "error", "n_events", "n_windows", "seconds")
CHECKSUM = "xxh3_128"
"""Identifies a recording's bytes for resuming: fast (~10 GB/s against sha256's ~1.3 GB/s here),
not cryptographic (a changed file is to be noticed, not an attacker)."""
_HASHES = {"xxh3_128": xxhash.xxh3_128, "sha256": hashlib.sha256}


def file_digest(path: str | os.PathLike, algorithm: str = CHECKSUM) -> str:
    """Hex digest of a file's bytes with `algorithm` (xxh3_128 or sha256), read in blocks."""
    if algorithm not in _HASHES:
        raise ValueError(f"unknown checksum algorithm {algorithm!r}; known: {sorted(_HASHES)}")
    with open(path, "rb") as file:
        return hashlib.file_digest(file, _HASHES[algorithm]).hexdigest()


def file_checksum(path: str | os.PathLike, algorithm: str = CHECKSUM) -> str:
    """A file's checksum as stored in results: ``"<algorithm>:<hex digest>"``."""
    return f"{algorithm}:{file_digest(path, algorithm)}"


def same_checksum(path: str | os.PathLike, checksum: str) -> bool:
    """Whether the file's bytes have `checksum`, computed with the algorithm it names
    (so results written with sha256 by format 1 still resume); False for an unknown one."""
    algorithm = checksum.partition(":")[0]
    return algorithm in _HASHES and file_checksum(path, algorithm) == checksum


def recording_key(path: str) -> str:
    """Group name of a recording: a hash of its path (paths hold '/' and any character)."""
    return hashlib.sha1(path.encode()).hexdigest()[:24]


def part_key(key: str, part: int, parts: int) -> str:
    """Group name of part `part` of `parts` of the recording `key` (the key itself if whole)."""
    return key if parts == 1 else f"{key}~{part}of{parts}"


def parts_dir(output: str | os.PathLike) -> Path:
    """Folder of the ranks' part files beside the output file."""
    output = Path(output)
    return output.with_name(output.name + ".parts")


def iter_records(
    output: str | os.PathLike, keys: Sequence[str] | None = None
) -> Iterator[dict[str, Any]]:
    """Attributes (all, or `keys`) of every finished recording: the final file's, then the
    parts', oldest first."""
    output = Path(output)
    if output.exists():
        with h5py.File(output, "r") as file:
            yield from _whole_records(file, keys)
    for path in part_files(output):  # one open at a time: a killed run may leave thousands
        part = open_part(path)
        if part is None:
            continue
        with part:
            try:
                records = list(_whole_records(part, keys))
            except (OSError, KeyError) as error:  # opens, but damaged inside
                skip_part(path, error)
                continue
        yield from records


def _whole_records(file: h5py.File, keys: Sequence[str] | None) -> Iterator[dict[str, Any]]:
    for group in file.get(RECORDINGS, {}).values():
        if "parts" not in group.attrs:  # a part of a recording is not a recording
            yield record_attrs(group, keys)


def open_part(path: Path) -> h5py.File | None:
    """A part file open for reading, or None (with a warning) if it cannot be read.

    Parts are not fsynced (they are progress, not results): after a power cut one may hold
    garbage under its final name. Its recordings then count as not done and are redone.
    """
    try:
        return h5py.File(path, "r")
    except OSError as error:
        skip_part(path, error)
        return None


def skip_part(path: Path, error: Exception) -> None:
    warnings.warn(
        f"{path}: skipped, not a readable part file ({error}); its recordings will be redone",
        stacklevel=3,
    )


def part_files(output: str | os.PathLike) -> list[Path]:
    """The committed part files of every rank, oldest first (names start with the time)."""
    return sorted(parts_dir(output).glob("rank-*/*.h5"), key=lambda path: path.name)


_sequence = itertools.count()


def new_part_path(folder: Path) -> Path:
    """A new part file name in `folder` that sorts after every earlier one (time, pid, count)."""
    return folder / f"{time.time_ns():020d}-{os.getpid()}-{next(_sequence):06d}.h5"


def completed(output: str | os.PathLike) -> dict[str, str]:
    """path -> checksum ("<algorithm>:<hex>") of the recordings a previous run finished (done,
    or failed on content)."""
    records = iter_records(output, ("path", "checksum", "sha256"))
    return {r["path"]: _checksum(r) for r in records if _checksum(r)}


def _checksum(record: Mapping[str, Any]) -> str:
    """The record's checksum; format 1 stored a bare sha256 hex digest as @sha256."""
    if record.get("checksum"):
        return record["checksum"]
    return f"sha256:{record['sha256']}" if record.get("sha256") else ""


def record_attrs(group: h5py.Group, keys: Sequence[str] | None = None) -> dict[str, Any]:
    """A recording group's attributes (all, or those of `keys` it has) as plain Python values."""
    attrs = group.attrs
    names = attrs.keys() if keys is None else [key for key in keys if key in attrs]
    return {key: _plain(attrs[key]) for key in names}


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


class RecordingPart:
    """One recording's window rows while it is processed, then its group in a part file.

    Rows are kept in memory until the recording finishes and is committed with the others of
    its batch (`commit_parts`); past `flush_bytes` of buffered rows (encoded tensors of long
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
    ) -> None:
        self.folder = folder
        self.key = part_key(recording_key(path), part, parts)
        self.attrs: dict[str, Any] = {"path": path, "rank": rank}
        if parts > 1:
            self.attrs.update(part=part, parts=parts)
        self.flush_bytes = flush_bytes
        self.buffered: dict[str, list[np.ndarray]] = {}
        self.buffered_bytes = 0
        self.rows = 0
        self.spill: h5py.File | None = None
        self.spill_path = folder / f".{self.key}-{os.getpid()}.spill.tmp"
        self.layer_names: list[str] = []
        self.probability_sum: np.ndarray | None = None
        self.votes: np.ndarray | None = None

    def append(self, columns: Mapping[str, np.ndarray]) -> None:
        """Add rows (one per window) to the columns named by `columns`."""
        for name, rows in columns.items():
            rows = np.asarray(rows)
            self.buffered.setdefault(name, []).append(rows)
            self.buffered_bytes += rows.nbytes
        if "probabilities" in columns:
            self._count(np.asarray(columns["probabilities"]), np.asarray(columns["predicted"]))
        if self.buffered_bytes > self.flush_bytes:
            if self.spill is None:
                self.spill = h5py.File(self.spill_path, "w")
            _write_rows(self.spill.require_group(RECORDINGS).require_group(self.key), self)

    def _count(self, probabilities: np.ndarray, predicted: np.ndarray) -> None:
        """Running sums for the whole-recording mean probability and majority vote."""
        if self.probability_sum is None:
            self.probability_sum = np.zeros(probabilities.shape[1], dtype=np.float64)
            self.votes = np.zeros(probabilities.shape[1], dtype=np.int64)
        self.probability_sum += probabilities.sum(axis=0)
        self.votes += np.bincount(predicted, minlength=len(self.votes))
        self.rows += len(probabilities)

    def finish(self, record: Mapping[str, Any], layer_names: list[str]) -> bool:
        """Take the recording's record; return whether it is committed already (own file).

        A recording that streamed to its own file is written and renamed into place now; the
        others wait for `commit_parts`.
        """
        attrs = {"checksum": "", "size": -1, **self.attrs}
        attrs.update({key: record[key] for key in _RECORD_ATTRS if key in record})
        attrs["status"] = STATUS_FAILED if record.get("error") else STATUS_DONE
        attrs["error"] = record.get("error", "")
        attrs["predicted"] = attrs["predicted_majority"] = -1
        if self.probability_sum is not None:
            attrs["predicted"] = int(self.probability_sum.argmax())
            attrs["predicted_majority"] = int(self.votes.argmax())
        self.attrs, self.layer_names = attrs, layer_names
        if self.spill is None:
            return False
        self.write_into(self.spill[RECORDINGS])
        self.spill.close()
        with written_atomically(new_part_path(self.folder), durable=False) as tmp:
            os.replace(self.spill_path, tmp)
        return True

    def write_into(self, recordings: h5py.Group) -> None:
        """Write the recording's group (rows, whole-recording prediction, record) under it."""
        group = recordings.require_group(self.key)
        _write_rows(group, self)
        if self.probability_sum is not None:
            mean = self.probability_sum / max(self.rows, 1)
            put_dataset(group, "mean_probabilities", mean.astype(np.float32))
        if "firing_rates" in group:
            put_attrs(group["firing_rates"], {"layer_names": json.dumps(self.layer_names)})
        put_attrs(group, self.attrs)

    def abandon(self) -> None:
        """Close and remove an unfinished recording's own file (the recording will be redone)."""
        if self.spill is not None:
            self.spill.close()
        self.spill_path.unlink(missing_ok=True)


def commit_parts(folder: Path, parts: Sequence[RecordingPart]) -> Path:
    """Write finished recordings into one new part file: all of them or, if killed, none."""
    path = new_part_path(folder)
    # not fsynced: a power cut may lose a part, whose recordings are then redone (`open_part`);
    # two fsyncs cost ~27 ms a commit here, more than the commit itself for small recordings
    with written_atomically(path, durable=False) as tmp, h5py.File(tmp, "w") as file:
        recordings = file.create_group(RECORDINGS)
        for part in parts:
            part.write_into(recordings)
    return path


def _write_rows(group: h5py.Group, part: RecordingPart) -> None:
    """Write a part's buffered rows: whole datasets, or appended to resizable ones (spilled)."""
    resizable = part.spill is not None
    for name, chunks in part.buffered.items():
        rows = chunks[0] if len(chunks) == 1 else np.concatenate(chunks)
        if not resizable:  # a new group of a part file
            put_dataset(group, name, rows)
            continue
        if name not in group:
            row_bytes = max(1, rows[0].nbytes if len(rows) else 1)
            group.create_dataset(
                name,
                shape=(0, *rows.shape[1:]),
                maxshape=(None, *rows.shape[1:]),
                dtype=rows.dtype,
                chunks=(max(1, min(1024, 2**20 // row_bytes)), *rows.shape[1:]),
            )
        dataset = group[name]
        n = dataset.shape[0]
        dataset.resize(n + len(rows), axis=0)
        dataset[n:] = rows
    part.buffered, part.buffered_bytes = {}, 0


# A run over many small recordings writes ~10 datasets and ~12 attributes for each: h5py's
# low-level calls do it in about a third of the time of its high-level ones (~2.4 ms a
# recording here), with the same types on reading (UTF-8 strings, int64, float64).
_UTF8 = h5py.h5t.py_create(h5py.string_dtype(), logical=True)
_SCALAR = h5py.h5s.create(h5py.h5s.SCALAR)


def put_dataset(group: h5py.Group, name: str, data: np.ndarray) -> None:
    """``group[name] = data`` (a new, contiguous dataset) through h5py's low-level API."""
    data = np.ascontiguousarray(data)
    kind = h5py.h5t.py_create(data.dtype, logical=True)
    dataset = h5py.h5d.create(group.id, name.encode(), kind, h5py.h5s.create_simple(data.shape))
    if data.size:
        dataset.write(h5py.h5s.ALL, h5py.h5s.ALL, data)


def put_attrs(target: h5py.HLObject, attrs: Mapping[str, Any]) -> None:
    """``target.attrs.update(attrs)`` for str and numeric scalars through the low-level API."""
    for name, value in attrs.items():
        key = name.encode()
        if h5py.h5a.exists(target.id, key):
            h5py.h5a.delete(target.id, key)
        if isinstance(value, str):
            kind, array = _UTF8, np.array(value, dtype=h5py.string_dtype())
        else:
            array = np.asarray(value)
            kind = h5py.h5t.py_create(array.dtype)
        h5py.h5a.create(target.id, key, kind, _SCALAR).write(array)
