"""The batch results file: layout, per-recording part files, resume bookkeeping, checksums.

Final file (one per run, replaced atomically by the merge)::

    /                         @format, @format_version, run metadata (@checkpoint, @versions,
                              @parameters, @seconds since start-up, @predict_seconds since all
                              ranks were ready... JSON where not scalar), @runs (JSON list)
    /recordings/<key>         one group per recording, key = hash of its path
        @path @size @sha256 @status ("done" | "failed") @error @n_events @n_windows @seconds
        @rank (the process that wrote it)
        @predicted @predicted_majority  (whole recording: mean probability / majority; -1 if none)
        t_start t_stop first_event n_events index   (n_windows,) int64, window [t_start, t_stop)
        probabilities (n, classes) predicted (n,) spike_counts (n, classes)
        firing_rates (n, layers) @layer_names       (predictions)
        mean_probabilities (classes,)
        encoded (n, T, ...)                          (with --encode-only, instead of predictions)

While running, each rank writes every recording into its own part file
``<output>.parts/rank-<r>/<key>.h5`` (group ``/recording``, same layout): written to a temporary
name and renamed when the recording is complete, so a killed run loses no finished recording
and never leaves a half-written part where a finished one is expected.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np

FORMAT = "eventsnn-batch-results"
FORMAT_VERSION = 1
RECORDINGS = "recordings"
PART_GROUP = "recording"
STATUS_DONE, STATUS_FAILED = "done", "failed"
_RECORD_ATTRS = ("path", "size", "sha256", "status", "error", "n_events", "n_windows", "seconds")


def file_checksum(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes, read in blocks (hex)."""
    with open(path, "rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


def recording_key(path: str) -> str:
    """Group name of a recording: a hash of its path (paths hold '/' and any character)."""
    return hashlib.sha1(path.encode()).hexdigest()[:24]


def parts_dir(output: str | os.PathLike) -> Path:
    """Folder of the ranks' part files beside the output file."""
    output = Path(output)
    return output.with_name(output.name + ".parts")


def iter_records(output: str | os.PathLike) -> Iterator[dict[str, Any]]:
    """Attributes of every finished recording in the final file and in leftover part files."""
    output = Path(output)
    if output.exists():
        with h5py.File(output, "r") as file:
            for group in file.get(RECORDINGS, {}).values():
                yield record_attrs(group)
    for part in sorted(parts_dir(output).glob("rank-*/*.h5")):
        with h5py.File(part, "r") as file:
            yield record_attrs(file[PART_GROUP])


def completed(output: str | os.PathLike) -> dict[str, str]:
    """path -> checksum of the recordings a previous run finished (done or failed on content)."""
    return {r["path"]: r["sha256"] for r in iter_records(output) if r["sha256"]}


def record_attrs(group: h5py.Group) -> dict[str, Any]:
    """A recording group's attributes as plain Python values."""
    return {key: _plain(value) for key, value in group.attrs.items()}


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


class RecordingPart:
    """One recording's part file while it is written: rows buffered per batch, then finished.

    Rows are kept in memory and written in one go when the recording finishes (one file write
    per recording); past `flush_bytes` of buffered rows (encoded tensors of long recordings)
    they go to resizable datasets as they come, so memory stays bounded.
    """

    def __init__(self, folder: Path, path: str, rank: int = 0, flush_bytes: int = 2**24) -> None:
        self.final = folder / f"{recording_key(path)}.h5"
        self.tmp = folder / f"{self.final.name}.tmp-{os.getpid()}"
        self.attrs: dict[str, Any] = {"path": path, "rank": rank}
        self.flush_bytes = flush_bytes
        self.buffered: dict[str, list[np.ndarray]] = {}
        self.buffered_bytes = 0
        self.file: h5py.File | None = None
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
            self._flush(resizable=True)

    def _count(self, probabilities: np.ndarray, predicted: np.ndarray) -> None:
        """Running sums for the whole-recording mean probability and majority vote."""
        if self.probability_sum is None:
            self.probability_sum = np.zeros(probabilities.shape[1], dtype=np.float64)
            self.votes = np.zeros(probabilities.shape[1], dtype=np.int64)
        self.probability_sum += probabilities.sum(axis=0)
        self.votes += np.bincount(predicted, minlength=len(self.votes))

    def _group(self) -> h5py.Group:
        if self.file is None:
            self.file = h5py.File(self.tmp, "w")
            self.file.create_group(PART_GROUP)
        return self.file[PART_GROUP]

    def _flush(self, resizable: bool) -> None:
        """Write the buffered rows: appended to resizable datasets, or as whole datasets."""
        group = self._group()
        for name, parts in self.buffered.items():
            rows = parts[0] if len(parts) == 1 else np.concatenate(parts)
            if name not in group and not resizable:
                group.create_dataset(name, data=rows)
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
        self.buffered, self.buffered_bytes = {}, 0

    def finish(self, record: Mapping[str, Any], layer_names: list[str]) -> None:
        """Write the rows, the record and the whole-recording prediction; rename into place."""
        self._flush(resizable=self.file is not None)
        group = self._group()
        attrs = {"sha256": "", "size": -1, **self.attrs}
        attrs.update({key: record[key] for key in _RECORD_ATTRS if key in record})
        attrs["status"] = STATUS_FAILED if record.get("error") else STATUS_DONE
        attrs["error"] = record.get("error", "")
        attrs["predicted"] = attrs["predicted_majority"] = -1
        if self.probability_sum is not None:
            mean = self.probability_sum / group["probabilities"].shape[0]
            group.create_dataset("mean_probabilities", data=mean.astype(np.float32))
            attrs["predicted"] = int(mean.argmax())
            attrs["predicted_majority"] = int(self.votes.argmax())
        if "firing_rates" in group:
            group["firing_rates"].attrs["layer_names"] = json.dumps(layer_names)
        group.attrs.update(attrs)
        self.file.close()
        os.replace(self.tmp, self.final)

    def abandon(self) -> None:
        """Close and remove an unfinished part (the recording will be redone)."""
        if self.file is not None:
            self.file.close()
        self.tmp.unlink(missing_ok=True)
