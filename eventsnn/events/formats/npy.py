"""NumPy .npy event files: one structured array with fields x, y, t, p, memory-mapped on read.

The sensor size is kept in a JSON sidecar next to the array, `<name>.npy.json`:
`{"sensor_size": [width, height, polarities], "time_unit": "us"}`. Without a sidecar the size
comes from the caller or from the largest coordinates (`io.read` records which).

Small files (up to 1 MiB, ~80k events) stored in the event dtype itself, as `write_npy` writes
them, are read whole when opened instead: their header (the first read) matched against the one
numpy writes for that dtype, the rest in a second read. Opening a 5,000-event recording so costs
half of `numpy.load`'s header parsing, memory map and third read, which matters over thousands
of short recordings; such a file's ranges are views into its one buffer (at most 1 MiB). Any
other file goes through `numpy.load`.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from eventsnn.atomic import written_atomically
from eventsnn.events.core import (
    EVENT_DTYPE,
    EventsError,
    SensorSize,
    as_sensor_size,
    fitting,
)
from eventsnn.events.formats.base import (
    CHUNK_EVENTS,
    OpenedFile,
    aligned_blocks,
    index_range,
    library_errors,
    time_index_of,
)


def sidecar_path(path: Path) -> Path:
    """Where the sensor size of `path` is kept."""
    return path.with_name(path.name + ".json")


def _read_sidecar(path: Path) -> SensorSize | None:
    sidecar = sidecar_path(path)
    try:
        text = sidecar.read_text()
    except FileNotFoundError:
        return None
    try:
        content = json.loads(text)
        return as_sensor_size(content["sensor_size"])
    except (ValueError, KeyError, TypeError) as error:
        raise EventsError(f"{sidecar}: no valid 'sensor_size' entry ({error})") from error


_MAGIC = b"\x93NUMPY"
_EVENT_HEADER = re.compile(
    re.escape(f"{{'descr': {np.lib.format.dtype_to_descr(EVENT_DTYPE)!r}, ".encode())
    + rb"'fortran_order': False, 'shape': \((\d+),\), \} *\n"
)
"""The header numpy writes for a 1-D array of the event dtype (its length captured)."""
_WHOLE_READ_BYTES = 1 << 20
"""Files up to this size are read whole when they hold events in the event dtype itself."""
_HEADER_BYTES = 4096
"""Read first: numpy's header for the event dtype is 128 bytes (version 1), padded to 64."""


def _load(path: Path) -> tuple[np.ndarray, str | None]:
    """The file's array (small files in the event dtype read whole, others memory-mapped) and,
    for a cut file, what is wrong: the array then holds the whole records before the cut."""
    with library_errors(path, "not a readable .npy event array"):
        loaded = _read_small_events(path)
        if loaded is None:
            loaded = _memory_map(path)
    array, damage = loaded
    names = array.dtype.names or ()
    missing = [name for name in ("x", "y", "t", "p") if name not in names]
    if missing or array.ndim != 1:
        raise EventsError(
            f"{path}: expected a one-dimensional structured array with fields x, y, t, p; "
            f"got shape {array.shape} and fields {list(names)}"
        )
    for name in ("x", "y", "t"):
        if array.dtype[name].kind not in "iu":
            raise EventsError(
                f"{path}: field {name!r} holds {array.dtype[name]}, not integers "
                "(t in microseconds, x and y in pixels)"
            )
    return array, damage


def _memory_map(path: Path) -> tuple[np.ndarray, str | None]:
    """The file's array memory-mapped; a cut one's whole records (numpy maps none of it)."""
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False), None
    except ValueError:
        with open(path, "rb") as file:
            version = np.lib.format.read_magic(file)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(file)
            else:  # versions 2 and 3 differ in the header's encoding only (ASCII here)
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(file)
            offset = file.tell()
        whole = (os.path.getsize(path) - offset) // max(dtype.itemsize, 1)
        if len(shape) != 1 or fortran or dtype.hasobject or whole >= shape[0]:
            raise  # not a cut array of records
    array = np.memmap(path, dtype, "r", offset, (whole,)) if whole else np.empty(0, dtype)
    return array, _cut(shape[0], whole)


def _cut(count: int, whole: int) -> str:
    return f"truncated: the header says {count} events, the file holds {whole}"


def _read_small_events(path: Path) -> tuple[np.ndarray, str | None] | None:
    """The events of a file of at most `_WHOLE_READ_BYTES` whose header is numpy's for the
    event dtype, read in two calls (header, then the rest; polarity bytes made 0/1), and what
    is wrong if it is cut (its whole records are read); None for any other file, of which
    only the first `_HEADER_BYTES` are read."""
    with open(path, "rb") as file:
        size = os.fstat(file.fileno()).st_size
        if size > _WHOLE_READ_BYTES:
            return None
        head = file.read(_HEADER_BYTES)
        offset, count = _event_header(head)
        if count is None:
            return None
        data = bytearray(size)
        data[: len(head)] = head
        read = len(head) + (file.readinto(memoryview(data)[len(head) :]) if size > len(head) else 0)
    whole = min(count, max(read - offset, 0) // EVENT_DTYPE.itemsize)
    events = np.frombuffer(data, dtype=EVENT_DTYPE, count=whole, offset=offset)
    polarity = events["p"]
    np.greater(polarity.view(np.uint8), 0, out=polarity)  # a stored byte 2 reads as 1 (True)
    return events, None if whole == count else _cut(count, whole)


def _event_header(head: bytes) -> tuple[int, int | None]:
    """(where the data starts, number of events) when `head` starts with numpy's header for a
    1-D array of the event dtype (versions 1 to 3), else (0, None)."""
    if len(head) < 12 or head[:6] != _MAGIC or head[6] not in (1, 2, 3):
        return 0, None
    start = 10 if head[6] == 1 else 12
    offset = start + int.from_bytes(head[8:start], "little")
    match = _EVENT_HEADER.fullmatch(head[start:offset]) if offset <= len(head) else None
    return (offset, int(match.group(1))) if match else (0, None)


def _copy(path: Path, array: np.ndarray, lo: int, hi: int) -> np.ndarray:
    if array.dtype == EVENT_DTYPE and isinstance(array, np.memmap):
        return _read_rows(path, array, lo, hi)
    if array.dtype == EVENT_DTYPE:  # read whole by `_read_small_events`: a view of its buffer
        return array[lo:hi]
    events = np.empty(hi - lo, dtype=EVENT_DTYPE)
    with library_errors(path, "cannot read"):
        for name in ("x", "y", "t"):
            events[name] = fitting(name, array[name][lo:hi], f"{path}: ", lo)
        events["p"] = array["p"][lo:hi] > 0  # 1/0 or 1/-1: positive is ON
    return events


def _read_rows(path: Path, array: np.memmap, lo: int, hi: int) -> np.ndarray:
    """Rows lo:hi of a file stored in the event dtype itself, read with one read call.

    A field-by-field copy out of the mapping faults each page in: 9-12 ms a million events on
    this project's VM against 2 ms for this.
    """
    events = np.empty(hi - lo, dtype=EVENT_DTYPE)
    with library_errors(path, "cannot read"), open(path, "rb") as file:
        file.seek(array.offset + lo * EVENT_DTYPE.itemsize)
        read = file.readinto(events)
    if read != events.nbytes:
        raise EventsError(
            f"{path}: truncated: events {lo}..{hi - 1} hold {events.nbytes} bytes, read {read}"
        )
    polarity = events["p"]
    np.greater(polarity.view(np.uint8), 0, out=polarity)  # a stored byte 2 reads as 1 (True)
    return events


def open_npy(path: Path) -> OpenedFile:
    """A .npy event array: memory-mapped (nothing read until asked), or a small file read
    whole (module docstring)."""
    array, damage = _load(path)

    def packets(t_start: int | None, t_stop: int | None) -> Iterator[np.ndarray]:
        lo, hi = index_range(array["t"], t_start, t_stop)
        for start, stop in aligned_blocks(lo, hi, CHUNK_EVENTS):
            yield _copy(path, array, start, stop)

    def read_range(t_start: int | None, t_stop: int | None) -> np.ndarray:
        return _copy(path, array, *index_range(array["t"], t_start, t_stop))

    return OpenedFile(
        format="npy",
        sensor_size=_read_sidecar(path),
        packets=packets,
        read_range=read_range,
        time_index=lambda: time_index_of(array["t"]),
        metadata={"dtype": str(array.dtype)},
        damage=damage,
    )


def write_npy(path: Path, events: np.ndarray, sensor_size: SensorSize) -> None:
    """Write validated events and the sidecar (each to a temporary file renamed into place)."""
    with library_errors(path, "cannot write .npy"):
        with written_atomically(path) as tmp, open(tmp, "wb") as f:
            np.save(f, events.astype(EVENT_DTYPE, copy=False))
        with written_atomically(sidecar_path(path)) as tmp:
            tmp.write_text(json.dumps({"sensor_size": list(sensor_size), "time_unit": "us"}))
