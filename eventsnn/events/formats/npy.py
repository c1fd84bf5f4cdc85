"""NumPy .npy event files: one structured array with fields x, y, t, p, memory-mapped on read.

The sensor size is kept in a JSON sidecar next to the array, `<name>.npy.json`:
`{"sensor_size": [width, height, polarities], "time_unit": "us"}`. Without a sidecar the size
comes from the caller or from the largest coordinates (`io.read` records which).

A file of at most a block of events (`CHUNK_EVENTS`) stored in the event dtype itself, as
`write_npy` writes it, is read whole in one call when opened, its header matched against the
one numpy writes for that dtype: opening a 5,000-event recording so costs a third of
`numpy.load`'s memory map, header parsing and second read, which matters over thousands of
short recordings. Any other file goes through `numpy.load`.
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
_WHOLE_READ_BYTES = CHUNK_EVENTS * EVENT_DTYPE.itemsize + 4096
"""Files up to a block of events (and a header) are read whole when they hold events as is."""


def _load(path: Path) -> np.ndarray:
    """The file's array: small files in the event dtype read whole, others memory-mapped."""
    with library_errors(path, "not a readable .npy event array"):
        array = _read_small_events(path)
        if array is None:
            array = np.load(path, mmap_mode="r", allow_pickle=False)
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
    return array


def _read_small_events(path: Path) -> np.ndarray | None:
    """The events of a file of at most `_WHOLE_READ_BYTES` whose header is numpy's for the
    event dtype, read in one call (polarity bytes made 0/1); None for any other file."""
    with open(path, "rb") as file:
        size = os.fstat(file.fileno()).st_size
        if size > _WHOLE_READ_BYTES:
            return None
        data = bytearray(size)
        file.readinto(data)
    if size < 12 or data[:6] != _MAGIC or data[6] not in (1, 2, 3):
        return None
    length_bytes = 2 if data[6] == 1 else 4
    start = 8 + length_bytes
    offset = start + int.from_bytes(data[8:start], "little")
    match = _EVENT_HEADER.fullmatch(bytes(data[start:offset]))
    if match is None:
        return None
    count = int(match.group(1))
    if offset + count * EVENT_DTYPE.itemsize > size:
        raise EventsError(
            f"{path}: truncated: the header says {count} events, the file holds "
            f"{(size - offset) // EVENT_DTYPE.itemsize}"
        )
    events = np.frombuffer(data, dtype=EVENT_DTYPE, count=count, offset=offset)
    polarity = events["p"]
    np.greater(polarity.view(np.uint8), 0, out=polarity)  # a stored byte 2 reads as 1 (True)
    return events


def _copy(path: Path, array: np.ndarray, lo: int, hi: int) -> np.ndarray:
    if array.dtype == EVENT_DTYPE and isinstance(array, np.memmap):
        return _read_rows(path, array, lo, hi)
    if array.dtype == EVENT_DTYPE:  # read whole by `_read_small_events`: its own copy
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
    """A .npy event array (memory-mapped: nothing is read until asked)."""
    array = _load(path)

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
    )


def write_npy(path: Path, events: np.ndarray, sensor_size: SensorSize) -> None:
    """Write validated events and the sidecar (each to a temporary file renamed into place)."""
    with library_errors(path, "cannot write .npy"):
        with written_atomically(path) as tmp, open(tmp, "wb") as f:
            np.save(f, events.astype(EVENT_DTYPE, copy=False))
        with written_atomically(sidecar_path(path)) as tmp:
            tmp.write_text(json.dumps({"sensor_size": list(sensor_size), "time_unit": "us"}))
