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
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import h5py

from eventsnn.atomic import written_atomically
from eventsnn.inference.results import (
    FORMAT,
    FORMAT_VERSION,
    RECORDINGS,
    open_part,
    part_files,
    parts_dir,
)


def merge(output: str | os.PathLike, metadata: Mapping[str, Any], complete: bool = True) -> int:
    """Merge parts into `output` with this run's `metadata`; return the number of recordings.

    `complete` (every rank has finished) removes the whole parts folder, unfinished parts of
    killed runs included; otherwise only the merged parts are removed.
    """
    output = Path(output)
    parts = part_files(output)
    # durable: the parts are deleted once the merged file is in place
    with written_atomically(output) as tmp, h5py.File(tmp, "w") as target:
        recordings = target.create_group(RECORDINGS)
        for path in reversed(parts):  # newest first: a recording's newest result wins
            part = open_part(path)
            if part is None:
                continue
            with part:
                for key, group in part.get(RECORDINGS, {}).items():
                    if key not in recordings:
                        part.copy(group, recordings, name=key)
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
