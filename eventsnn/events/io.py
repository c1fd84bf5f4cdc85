"""Reading and writing event files: `read`, `write` and `iter_chunks`.

Formats (by suffix, or `format=`): AEDAT4 (.aedat4), Prophesee EVT2/EVT3 (.raw, the version
from the header; `format="evt2"|"evt3"`), DAT (.dat: CD events via faery, Gen1 type 0x00 via
expelliarmus), Event Stream (.es), CSV (.csv), our HDF5 layout (.h5/.hdf5, see
`formats.hdf5`) and NumPy (.npy, see `formats.npy`). Timestamps are int64 microseconds end to
end; a time range is half-open, `t_start <= t < t_stop`.

A corrupt, cut or unknown file raises `EventsError` naming the file and what is wrong. With
`partial=True` a cut or corrupt file gives the whole records before the damage, a warning and
`Recording.truncated = True`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing
from os import PathLike
from pathlib import Path

import numpy as np

from eventsnn.events.core import (
    EventsError,
    Recording,
    SensorSize,
    SensorSizeError,
    as_sensor_size,
    join_events,
    validate,
)
from eventsnn.events.formats import (
    WRITE_FORMATS,
    format_name,
    open_events_file,
    write_events_file,
)
from eventsnn.events.formats.base import OpenedFile, TimeIndex
from eventsnn.events.formats.regroup import by_count, by_duration

VENDOR_POLARITIES = 2
"""Vendor formats store ON/OFF events of a (width, height) sensor."""


class _Progress:
    """What a pass over a file found out: events so far, last timestamp, damage seen.

    `skipped` tells how many events of the file precede the pass's first (a pass from a time
    may seek there); it is asked only to name a bad event by its index in the whole file.
    """

    def __init__(self, skipped: Callable[[], int] = lambda: 0) -> None:
        self.skipped = skipped
        self.n_events = 0
        self.last_t: int | None = None
        self.truncated = False

    def next_index(self) -> int:
        """The index in the file of the next event the pass decodes."""
        return self.skipped() + self.n_events


def _report_damage(path: Path, damage: str, partial: bool, progress: _Progress) -> None:
    if not partial:
        raise EventsError(f"{path}: {damage} (pass partial=True to get the events before it)")
    progress.truncated = True
    warnings.warn(
        f"{path}: {damage}; keeping the {progress.n_events} events decoded before it",
        stacklevel=4,
    )


def _decoded(
    path: Path,
    opened: OpenedFile,
    t_start: int | None,
    t_stop: int | None,
    partial: bool,
    progress: _Progress,
) -> Iterator[np.ndarray]:
    """The decoder's packets; damage found while decoding ends them if `partial`. Damage the
    opener found (a cut last record) fails at once, or with `partial` is told once the
    records before it are decoded, with their number."""
    if opened.damage is not None and not partial:
        _report_damage(path, opened.damage, partial, progress)
    try:
        yield from opened.packets(t_start, t_stop)
    except EventsError as error:
        _report_damage(path, str(error).removeprefix(f"{path}: "), partial, progress)
        return
    if opened.damage is not None:
        _report_damage(path, opened.damage, partial, progress)


def _checked_packets(
    path: Path,
    opened: OpenedFile,
    sensor_size: SensorSize | None,
    t_start: int | None,
    t_stop: int | None,
    partial: bool,
    progress: _Progress,
) -> Iterator[np.ndarray]:
    """Decoded packets, validated (order across packets too), cut to [t_start, t_stop)."""
    with closing(_decoded(path, opened, t_start, t_stop, partial, progress)) as packets:
        for packet in packets:
            if len(packet) == 0:
                continue
            _validate_packet(path, packet, sensor_size, progress)
            t = packet["t"]
            if t_start is not None and t[-1] < t_start:
                continue
            if t_start is not None and t[0] < t_start:
                packet = packet[np.searchsorted(t, t_start, side="left") :]
            if t_stop is not None and packet["t"][-1] >= t_stop:
                packet = packet[: np.searchsorted(packet["t"], t_stop, side="left")]
                if len(packet):
                    yield packet
                return
            yield packet


def _validate_packet(
    path: Path, packet: np.ndarray, sensor_size: SensorSize | None, progress: _Progress
) -> None:
    try:
        validate(packet, sensor_size)
    except EventsError:  # checked again to name the bad event by its index in the file
        try:
            validate(packet, sensor_size, offset=progress.next_index())
        except EventsError as error:
            raise type(error)(f"{path}: {error}") from None
    if len(packet) == 0:
        return
    t = packet["t"]
    if progress.last_t is not None and t[0] < progress.last_t:
        first = progress.next_index()
        raise EventsError(
            f"{path}: field 't' is not sorted: event {first} has t={int(t[0])} "
            f"< t={progress.last_t} of event {first - 1}"
        )
    progress.n_events += len(packet)
    progress.last_t = int(t[-1])


def _resolve_size(
    path: Path, from_file: SensorSize | None, given: SensorSize | None
) -> tuple[SensorSize | None, str]:
    """The sensor size to check events against, and where it came from."""
    if from_file is not None:
        if given is not None and given[:2] != from_file[:2]:
            raise SensorSizeError(
                f"{path}: the file says sensor size {from_file}, but sensor_size={given} was given"
            )
        return from_file, "file"
    if given is not None:
        return given, "argument"
    return None, "inferred from max coordinates"


def _skipped(opened: OpenedFile, t_start: int | None) -> Callable[[], int]:
    """How many events a pass from `t_start` skips: a reader that seeks by time (one with a
    time index) starts at the first event at or after `t_start`; the others decode, and
    count, the file from its first event. Asked only for an error: it costs a search."""

    def skipped() -> int:
        index = None if t_start is None or opened.time_index is None else opened.time_index()
        return 0 if index is None else index.events_before(t_start)

    return skipped


def _infer_size(path: Path, events: np.ndarray) -> SensorSize:
    if len(events) == 0:
        return (1, 1, VENDOR_POLARITIES)
    validate(events)
    x_min, y_min = int(events["x"].min()), int(events["y"].min())
    if x_min < 0 or y_min < 0:
        raise EventsError(f"{path}: negative coordinates (min x={x_min}, min y={y_min})")
    return (int(events["x"].max()) + 1, int(events["y"].max()) + 1, VENDOR_POLARITIES)


def _check_range(t_start: int | None, t_stop: int | None) -> None:
    if t_start is not None and t_stop is not None and t_stop < t_start:
        raise EventsError(f"t_stop={t_stop} is before t_start={t_start}")


def read(
    path: str | PathLike,
    format: str | None = None,
    *,
    t_start: int | None = None,
    t_stop: int | None = None,
    partial: bool = False,
    sensor_size: Sequence[int] | None = None,
) -> Recording:
    """Read the events of a file (those with t_start <= t < t_stop when given).

    `sensor_size` is used when the file stores none (Gen1 DAT, plain CSV, .npy without
    sidecar); otherwise it is inferred from the largest coordinates. `metadata` says which.
    HDF5 and .npy files read only the requested range from disk (a .npy of at most 1 MiB is
    read whole), into one array; the other formats decode packet by packet and hold the packets
    and their join while joining.
    """
    path = Path(path)
    _check_range(t_start, t_stop)
    given = None if sensor_size is None else as_sensor_size(sensor_size)
    opened = open_events_file(path, format)
    size, source = _resolve_size(path, opened.sensor_size, given)
    progress = _Progress(_skipped(opened, t_start))
    if opened.read_range is not None and opened.damage is None:
        events = opened.read_range(t_start, t_stop)
        _validate_packet(path, events, size, progress)
    else:
        packets = list(_checked_packets(path, opened, size, t_start, t_stop, partial, progress))
        events = join_events(packets)
        del packets
    if size is None:
        size = _infer_size(path, events)
    metadata = {**opened.metadata, "sensor_size_source": source, "time_unit": "us"}
    if t_start is not None or t_stop is not None:
        metadata["time_range"] = (t_start, t_stop)
    return Recording(
        events=events,
        sensor_size=size,
        path=path,
        format=opened.format,
        metadata=metadata,
        truncated=progress.truncated,
    )


def iter_chunks(
    path: str | PathLike,
    *,
    duration_us: int | None = None,
    n_events: int | None = None,
    format: str | None = None,
    partial: bool = False,
    sensor_size: Sequence[int] | None = None,
) -> Iterator[np.ndarray]:
    """Stream a file as windows of `duration_us` microseconds or of `n_events` events.

    Time windows are [t0 + k * duration_us, t0 + (k + 1) * duration_us) from the first event
    t0, empty windows included; count windows hold exactly n_events (the last one the rest).
    Concatenated, the windows equal `read(path).events`. Memory: one window plus one packet.
    """
    if (duration_us is None) == (n_events is None):
        raise EventsError("iter_chunks needs exactly one of duration_us= or n_events=")
    size = duration_us if n_events is None else n_events
    if int(size) != size or size < 1:
        raise EventsError(f"window size must be a positive integer, got {size!r}")
    packets = iter_packets(path, format=format, partial=partial, sensor_size=sensor_size)
    if n_events is not None:
        return by_count(packets, int(n_events))
    return by_duration(packets, int(duration_us))


def iter_packets(
    path: str | PathLike,
    *,
    format: str | None = None,
    partial: bool = False,
    sensor_size: Sequence[int] | None = None,
    t_start: int | None = None,
) -> Iterator[np.ndarray]:
    """A file's events as its decoder yields them, checked (see `iter_chunks`), from the
    first event at or after `t_start` (formats that seek by time go there without decoding
    what is before): packets of any size, for readers that regroup them. An error names a bad
    event by its index in the whole file, wherever the reading started."""
    path = Path(path)
    given = None if sensor_size is None else as_sensor_size(sensor_size)
    opened = open_events_file(path, format)
    checked_size, _ = _resolve_size(path, opened.sensor_size, given)
    progress = _Progress(_skipped(opened, t_start))
    return _checked_packets(path, opened, checked_size, t_start, None, partial, progress)


def time_index(path: str | PathLike, format: str | None = None) -> TimeIndex | None:
    """Where times fall in a file that can seek by time (.h5, .npy): its first and last t
    and a search for the events before a time; None for other formats,
    damaged or empty files. Reads a few events, not the file (but a .npy of at most 1 MiB)."""
    path = Path(path)
    opened = open_events_file(path, format)
    if opened.time_index is None or opened.damage is not None:
        return None
    return opened.time_index()


def write(
    path: str | PathLike,
    events: np.ndarray,
    sensor_size: Sequence[int],
    format: str | None = None,
) -> None:
    """Write events to a file in the format of its suffix or `format` (.raw: EVT3 by default)."""
    path = Path(path)
    size = as_sensor_size(sensor_size)
    try:
        validate(events, size)
    except EventsError as error:
        raise EventsError(f"{path}: cannot write: {error}") from None
    name = format_name(path, format, (*WRITE_FORMATS, "evt"))
    name = "evt3" if name == "evt" else name
    if name not in ("hdf5", "npy") and size[2] != VENDOR_POLARITIES:
        raise EventsError(
            f"{path}: {name} stores ON/OFF events of a (width, height) sensor; sensor size "
            f"{size} has {size[2]} polarities (use .h5 or .npy)"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    write_events_file(path, events, size, name)
