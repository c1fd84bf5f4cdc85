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
    """One recording's part file while it is written: rows appended per batch, then finished."""

    def __init__(self, folder: Path, path: str, rank: int = 0) -> None:
        self.final = folder / f"{recording_key(path)}.h5"
        self.tmp = folder / f"{self.final.name}.tmp-{os.getpid()}"
        self.file = h5py.File(self.tmp, "w")
        self.group = self.file.create_group(PART_GROUP)
        self.group.attrs["path"] = path
        self.group.attrs["rank"] = rank

    def append(self, columns: Mapping[str, np.ndarray]) -> None:
        """Append rows (one per window) to the datasets named by `columns`."""
        for name, rows in columns.items():
            rows = np.asarray(rows)
            if name not in self.group:
                self.group.create_dataset(
                    name,
                    shape=(0, *rows.shape[1:]),
                    maxshape=(None, *rows.shape[1:]),
                    dtype=rows.dtype,
                    chunks=(max(1, min(1024, 2**20 // max(1, rows[0].nbytes))), *rows.shape[1:]),
                )
            dataset = self.group[name]
            n = dataset.shape[0]
            dataset.resize(n + len(rows), axis=0)
            dataset[n:] = rows

    def finish(self, record: Mapping[str, Any], layer_names: list[str]) -> None:
        """Write the recording's record and whole-recording prediction; rename into place."""
        for key in _RECORD_ATTRS:
            if key in record:
                self.group.attrs[key] = record[key]
        self.group.attrs["status"] = STATUS_FAILED if record.get("error") else STATUS_DONE
        self.group.attrs["error"] = record.get("error", "")
        self.group.attrs.setdefault("sha256", "")
        self.group.attrs.setdefault("size", -1)
        if "firing_rates" in self.group:
            self.group["firing_rates"].attrs["layer_names"] = json.dumps(layer_names)
        self.group.attrs["predicted"], self.group.attrs["predicted_majority"] = -1, -1
        if "probabilities" in self.group and len(self.group["probabilities"]):
            mean = self.group["probabilities"][:].mean(axis=0)
            self.group.create_dataset("mean_probabilities", data=mean)
            self.group.attrs["predicted"] = int(mean.argmax())
            votes = np.bincount(self.group["predicted"][:], minlength=len(mean))
            self.group.attrs["predicted_majority"] = int(votes.argmax())
        self.file.close()
        os.replace(self.tmp, self.final)

    def abandon(self) -> None:
        """Close and remove an unfinished part (the recording will be redone)."""
        self.file.close()
        self.tmp.unlink(missing_ok=True)
