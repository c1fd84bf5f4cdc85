"""eventsnn's own HDF5 event files, read lazily by time range.

Layout (format version 1)::

    /events                  group
        @format          = "eventsnn.events"
        @format_version  = 1
        @sensor_size     = int64[3]  (width, height, polarities)
        @time_unit       = "us"
    /events/x  int16[n]      pixel column (audio: channel)
    /events/y  int16[n]      pixel row (audio: 0)
    /events/t  int64[n]      timestamp in microseconds, non-decreasing
    /events/p  uint8[n]      polarity, 0 (OFF) or 1 (ON)

The four datasets are chunked (65536 events a chunk) and compressed (gzip level 4 with the
shuffle filter, readable by any HDF5 tool). A time range [t_start, t_stop) is found by binary
search on /events/t, each probe reading one chunk, so only the chunks in the range are read.
Chunks are decoded by `hdf5_chunks` (zlib-ng, outside h5py's lock), in packets that start on
multiples of CHUNK_EVENTS so that no chunk is decoded twice.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import h5py
import numpy as np

from eventsnn.atomic import written_atomically
from eventsnn.events.core import EVENT_DTYPE, EventsError, SensorSize, as_sensor_size, fitting
from eventsnn.events.formats.base import (
    CHUNK_EVENTS,
    OpenedFile,
    TimeIndex,
    aligned_blocks,
    index_range,
    library_errors,
)
from eventsnn.events.formats.hdf5_chunks import read_columns

FORMAT_NAME = "eventsnn.events"
FORMAT_VERSION = 1
GROUP = "events"
CHUNK = 1 << 16
COLUMNS = {"x": np.int16, "y": np.int16, "t": np.int64, "p": np.uint8}


def _read_slice(path: Path, group: h5py.Group, lo: int, hi: int) -> np.ndarray:
    """Events lo:hi. Columns of the event dtype's types are read into the events; others (any
    integers, written by another tool) are read as stored and must fit, as .npy columns must;
    a positive polarity is ON, as in `make_events`."""
    events = np.empty(hi - lo, dtype=EVENT_DTYPE)
    stored = {name: group[name] for name in COLUMNS}
    own = [name for name in ("x", "y", "t") if stored[name].dtype == EVENT_DTYPE[name]]
    other = {name: np.empty(hi - lo, stored[name].dtype) for name in COLUMNS if name not in own}
    targets = [(stored[name], events[name]) for name in own]
    read_columns([*targets, *((stored[name], out) for name, out in other.items())], lo, hi)
    for name, values in other.items():
        if name != "p":
            events[name] = fitting(name, values, f"{path}: ", lo)
    events["p"] = other["p"] > 0
    return events


def _check_layout(path: Path, group: h5py.Group) -> SensorSize:
    for name in COLUMNS:
        if name not in group or not isinstance(group[name], h5py.Dataset):
            raise EventsError(f"{path}: missing dataset /{GROUP}/{name}")
        if name != "p" and group[name].dtype.kind not in "iu":  # p: positive is ON
            raise EventsError(
                f"{path}: dataset /{GROUP}/{name} holds {group[name].dtype}, not integers "
                "(t in microseconds, x and y in pixels)"
            )
    lengths = {name: group[name].shape for name in COLUMNS}
    if len(set(lengths.values())) != 1 or len(lengths["t"]) != 1:
        raise EventsError(f"{path}: datasets /{GROUP}/{{x,y,t,p}} differ in shape: {lengths}")
    version = group.attrs.get("format_version")
    if version is None or int(version) > FORMAT_VERSION:
        raise EventsError(
            f"{path}: attribute /{GROUP}@format_version is {version!r}; "
            f"this reader knows versions up to {FORMAT_VERSION}"
        )
    unit = group.attrs.get("time_unit")
    if unit not in ("us", b"us"):
        raise EventsError(f"{path}: attribute /{GROUP}@time_unit is {unit!r}, expected 'us'")
    if "sensor_size" not in group.attrs:
        raise EventsError(f"{path}: missing attribute /{GROUP}@sensor_size")
    return as_sensor_size(tuple(int(s) for s in group.attrs["sensor_size"]))


def open_hdf5(path: Path) -> OpenedFile:
    """An eventsnn HDF5 event file: checks the layout, reads nothing but the header."""
    with library_errors(path, "not a readable HDF5 file"), h5py.File(path, "r") as f:
        if GROUP not in f:
            raise EventsError(f"{path}: no /{GROUP} group (not an eventsnn event file)")
        sensor_size = _check_layout(path, f[GROUP])
        version = int(f[GROUP].attrs["format_version"])

    def packets(t_start: int | None, t_stop: int | None) -> Iterator[np.ndarray]:
        with library_errors(path, "cannot read"), h5py.File(path, "r") as f:
            group = f[GROUP]
            lo, hi = index_range(group["t"], t_start, t_stop)
            for start, stop in aligned_blocks(lo, hi, CHUNK_EVENTS):
                yield _read_slice(path, group, start, stop)

    def read_range(t_start: int | None, t_stop: int | None) -> np.ndarray:
        with library_errors(path, "cannot read"), h5py.File(path, "r") as f:
            group = f[GROUP]
            return _read_slice(path, group, *index_range(group["t"], t_start, t_stop))

    def events_before(t: int) -> int:  # the file is opened for each search
        with library_errors(path, "cannot read"), h5py.File(path, "r") as f:
            return index_range(f[GROUP]["t"], t, None)[0]

    def time_index() -> TimeIndex | None:
        with library_errors(path, "cannot read"), h5py.File(path, "r") as f:
            t = f[GROUP]["t"]
            if len(t) == 0:
                return None
            return TimeIndex(int(t[0]), int(t[-1]), events_before)

    return OpenedFile(
        format="hdf5",
        sensor_size=sensor_size,
        packets=packets,
        read_range=read_range,
        time_index=time_index,
        metadata={"format_version": version},
    )


def write_hdf5(path: Path, events: np.ndarray, sensor_size: SensorSize) -> None:
    """Write validated events in the layout above (to a temporary file renamed into place)."""
    with (
        library_errors(path, "cannot write HDF5"),
        written_atomically(path) as tmp,
        h5py.File(tmp, "w") as f,
    ):
        group = f.create_group(GROUP)
        group.attrs["format"] = FORMAT_NAME
        group.attrs["format_version"] = FORMAT_VERSION
        group.attrs["sensor_size"] = np.asarray(sensor_size, dtype=np.int64)
        group.attrs["time_unit"] = "us"
        for name, dtype in COLUMNS.items():
            group.create_dataset(
                name,
                data=events[name].astype(dtype),
                chunks=(CHUNK,),
                maxshape=(None,),
                compression="gzip",
                compression_opts=4,
                shuffle=True,
            )
