"""The rank-0 merge: the previous results file and every rank's part files into one new file.

The new file is written beside the output and renamed over it, so the output is at every moment
either the previous complete file or the new one; the merged parts are removed only afterwards
(a recording found in several is taken from its newest part, else from the previous file).
After an interruption the merge takes the committed parts and leaves the others' unfinished
ones alone.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from eventsnn.atomic import written_atomically
from eventsnn.inference.results import (
    FORMAT,
    FORMAT_VERSION,
    RECORDINGS,
    STATUS_FAILED,
    open_part,
    part_files,
    parts_dir,
    skip_part,
)


def merge(output: str | os.PathLike, metadata: Mapping[str, Any], complete: bool = True) -> int:
    """Merge parts into `output` with this run's `metadata`; return the number of recordings.

    `complete` (every rank has finished) removes the whole parts folder, unfinished parts of
    killed runs included; otherwise only the committed part files are removed, with the pieces
    of split recordings not all there (those recordings are redone whole).
    """
    output = Path(output)
    parts = part_files(output)
    # durable: the parts are deleted once the merged file is in place
    with written_atomically(output) as tmp, h5py.File(tmp, "w") as target:
        recordings = target.create_group(RECORDINGS)
        pieces: Pieces = {}
        for path in reversed(parts):  # newest first: a recording's newest result wins
            _merge_part(path, recordings, pieces)
        runs = _copy_previous(output, recordings)
        target.attrs["format"] = FORMAT
        target.attrs["format_version"] = FORMAT_VERSION
        for name, value in metadata.items():
            target.attrs[name] = (
                value if isinstance(value, str | int | float) else json.dumps(value)
            )
        target.attrs["runs"] = json.dumps([*runs, dict(metadata)])
        count = len(recordings)
    if complete:
        shutil.rmtree(parts_dir(output), ignore_errors=True)
    for path in parts:
        path.unlink(missing_ok=True)
    return count


def _copy_previous(output: Path, recordings: h5py.Group) -> list[Any]:
    """Copy the old file's recordings not in `recordings` yet; return its runs' metadata."""
    if not output.exists():
        return []
    with h5py.File(output, "r") as previous:
        for key, group in previous.get(RECORDINGS, {}).items():
            if key not in recordings:
                previous.copy(group, recordings, name=key)
                copied = recordings[key]
                if "sha256" in copied.attrs and "checksum" not in copied.attrs:  # format 1
                    copied.attrs["checksum"] = f"sha256:{copied.attrs['sha256']}"
        return json.loads(previous.attrs.get("runs", "[]"))


Pieces = dict[tuple[str, int, str], dict[int, tuple[Path, str]]]
"""Parts of split recordings seen so far: (key, parts, checksum) -> part -> (file, group)."""


def _merge_part(path: Path, recordings: h5py.Group, pieces: Pieces) -> None:
    """Copy a part file's whole recordings that `recordings` lacks, and join each split one
    whose last missing part (same count of parts, same checksum) it holds. A file damaged
    inside is skipped, with what it added taken out again (its recordings are redone)."""
    part = open_part(path)
    if part is None:
        return
    added: list[str] = []
    try:
        with part:
            for name, group in part.get(RECORDINGS, {}).items():
                key = name.partition("~")[0]
                if key in recordings:
                    continue
                if "parts" not in group.attrs:
                    part.copy(group, recordings, name=key)
                    added.append(key)
                    continue
                count, checksum = int(group.attrs["parts"]), str(group.attrs["checksum"])
                found = pieces.setdefault((key, count, checksum), {})
                found.setdefault(int(group.attrs["part"]), (path, name))
                if len(found) == count:
                    added.append(key)
                    join_parts([found[k] for k in sorted(found)], recordings, key)
    except (OSError, KeyError) as error:
        for key in added:
            if key in recordings:
                del recordings[key]
        for found in pieces.values():  # its pieces can no more be read
            for number in [k for k, (file, _) in found.items() if file == path]:
                del found[number]
        skip_part(path, error)


def join_parts(sources: Sequence[tuple[Path, str]], recordings: h5py.Group, key: str) -> None:
    """Write the parts of a split recording, (part file, group name) in part order, as the one
    group an unsplit run writes: rows one after the other, counts summed, the whole-recording
    predictions taken over all rows."""
    with ExitStack() as files:
        groups = [
            files.enter_context(h5py.File(path, "r"))[RECORDINGS][name] for path, name in sources
        ]
        target = recordings.create_group(key)
        names = dict.fromkeys(name for group in groups for name in group)
        for name in names:
            if name != "mean_probabilities":
                _concatenate([group[name] for group in groups if name in group], target, name)
        target.attrs.update(_joined_attrs(groups, target))


def _concatenate(columns: Sequence[h5py.Dataset], target: h5py.Group, name: str) -> None:
    """One dataset of the columns' rows, copied ~16 MB at a time (encoded windows of a long
    recording are what was spilled to disk for not fitting in memory)."""
    rows = sum(len(column) for column in columns)
    first = columns[0]
    joined = target.create_dataset(name, shape=(rows, *first.shape[1:]), dtype=first.dtype)
    joined.attrs.update(first.attrs)
    step = max(1, 2**24 // max(1, first.dtype.itemsize * int(np.prod(first.shape[1:]))))
    at = 0
    for column in columns:
        for start in range(0, len(column), step):
            block = column[start : start + step]
            joined[at + start : at + start + len(block)] = block
        at += len(column)


def _joined_attrs(groups: Sequence[h5py.Group], target: h5py.Group) -> dict[str, Any]:
    attrs = {k: v for k, v in groups[0].attrs.items() if k not in ("part", "parts")}
    for name, join in (("n_windows", sum), ("n_events", max), ("seconds", sum)):
        if all(name in group.attrs for group in groups):
            attrs[name] = join(group.attrs[name].item() for group in groups)
    failed = [group for group in groups if group.attrs["status"] == STATUS_FAILED]
    if failed:
        attrs["status"], attrs["error"] = STATUS_FAILED, failed[0].attrs["error"]
    attrs["predicted"] = attrs["predicted_majority"] = -1
    if "probabilities" in target and len(target["probabilities"]):
        probabilities = target["probabilities"][()]
        mean = probabilities.astype(np.float64).sum(axis=0) / len(probabilities)
        target.create_dataset("mean_probabilities", data=mean.astype(np.float32))
        votes = np.bincount(target["predicted"][()], minlength=probabilities.shape[1])
        attrs["predicted"], attrs["predicted_majority"] = int(mean.argmax()), int(votes.argmax())
    return attrs
