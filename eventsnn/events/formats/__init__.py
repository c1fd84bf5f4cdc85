"""Event file formats: which reader or writer handles a file, by suffix or by explicit name.

One module per job: `vendor` (faery: AEDAT4, EVT2/EVT3, DAT of CD events, ES, CSV),
`gen1_dat` (expelliarmus: DAT of type 0x00), `hdf5` (our own layout), `npy`, `framing`
(headers and cut-record checks) and `regroup` (packets into exact windows).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from eventsnn.events.core import EventsError, SensorSize
from eventsnn.events.formats import vendor
from eventsnn.events.formats.base import OpenedFile
from eventsnn.events.formats.framing import read_percent_header
from eventsnn.events.formats.gen1_dat import open_gen1_dat
from eventsnn.events.formats.hdf5 import open_hdf5, write_hdf5
from eventsnn.events.formats.npy import open_npy, sidecar_path, write_npy

SUFFIX_FORMAT = {
    ".aedat4": "aedat4",
    ".raw": "evt",
    ".dat": "dat",
    ".es": "es",
    ".csv": "csv",
    ".h5": "hdf5",
    ".hdf5": "hdf5",
    ".npy": "npy",
}
"""File suffix -> format; "evt" means EVT2 or EVT3, whichever the header says."""

READ_FORMATS = ("aedat4", "evt", "evt2", "evt3", "dat", "es", "csv", "hdf5", "npy")
WRITE_FORMATS = ("aedat4", "evt2", "evt3", "dat", "es", "csv", "hdf5", "npy")
DAT_TYPE_CD = 0x0C
DAT_TYPE_TD = 0x00


def recording_files(path: Path) -> list[Path]:
    """The files a recording is read from: its event file and, for a .npy, the sidecar that
    gives its sensor size, if there is one (a changed sidecar changes the recording)."""
    sidecar = sidecar_path(path)
    return [path, sidecar] if path.suffix.lower() == ".npy" and sidecar.is_file() else [path]


def format_name(path: Path, format: str | None, known: tuple[str, ...]) -> str:
    """The format to use: `format` if given, else the one of the file's suffix."""
    if format is not None:
        name = format.lower()
        if name not in known:
            raise EventsError(f"{path}: unknown format {format!r}; known: {', '.join(known)}")
        return name
    name = SUFFIX_FORMAT.get(path.suffix.lower())
    if name is None:
        suffixes = ", ".join(SUFFIX_FORMAT)
        raise EventsError(
            f"{path}: unknown event file suffix {path.suffix!r}; known: {suffixes} "
            "(or pass format=)"
        )
    return name


def _open_dat(path: Path) -> OpenedFile:
    header = read_percent_header(path)
    with open(path, "rb") as f:
        f.seek(header.data_offset)
        type_and_size = f.read(2)
    if not type_and_size:  # a header and no events (how faery writes an empty recording)
        geometry = header.geometry()
        return OpenedFile(
            format="dat",
            sensor_size=None if geometry is None else (*geometry, 2),
            packets=lambda t_start, t_stop: iter(()),
        )
    if len(type_and_size) < 2:
        raise EventsError(f"{path}: DAT file ends before its event type and size bytes")
    event_type, event_size = type_and_size
    if event_type == DAT_TYPE_CD:
        return vendor.open_cd_dat(path, header, event_size)
    if event_type == DAT_TYPE_TD and event_size == 8:
        return open_gen1_dat(path, header, event_size)
    raise EventsError(
        f"{path}: unsupported DAT event type 0x{event_type:02X} of {event_size} bytes "
        "(readable: 0x0C CD events, 0x00 Gen1 TD events of 8 bytes)"
    )


def open_events_file(path: Path, format: str | None) -> OpenedFile:
    """Read the header of an event file and return how to decode it."""
    name = format_name(path, format, READ_FORMATS)
    if not path.is_file():
        raise EventsError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise EventsError(f"{path}: empty file (0 bytes)")
    if name == "aedat4":
        return vendor.open_aedat4(path)
    if name in ("evt", "evt2", "evt3"):
        return vendor.open_evt(path, None if name == "evt" else name)
    if name == "dat":
        return _open_dat(path)
    if name == "es":
        return vendor.open_es(path)
    if name == "csv":
        return vendor.open_csv(path)
    if name == "hdf5":
        return open_hdf5(path)
    return open_npy(path)


def write_events_file(path: Path, events: np.ndarray, sensor_size: SensorSize, name: str) -> None:
    """Write validated events in format `name` (one of WRITE_FORMATS)."""
    if name == "hdf5":
        write_hdf5(path, events, sensor_size)
    elif name == "npy":
        write_npy(path, events, sensor_size)
    else:
        vendor.write(path, events, sensor_size, name)
