"""Vendor event files through faery: AEDAT4, Prophesee EVT2/EVT3 (.raw) and DAT (CD), ES, CSV.

faery decodes and encodes these formats exactly, including EVT3's 24-bit and EVT2's 34-bit
timestamp wrap-arounds and epoch-microsecond AEDAT4 timestamps. This module adds what faery
leaves to its caller: whether the file states a sensor size, the EVT version from the header, a
cut last record that faery would drop without a word (see `framing`), and refusing to write
events that an encoder would store wrongly (sparse EVT3 events across a 2**24 us wrap, for
example).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import faery
import numpy as np

from eventsnn.events.core import EventsError, SensorSize
from eventsnn.events.formats.base import (
    OpenedFile,
    check_vendor_encodable,
    library_errors,
    slices,
    to_events,
)
from eventsnn.events.formats.framing import (
    PercentHeader,
    es_partial_record_bytes,
    partial_record_bytes,
    read_percent_header,
)

FAERY_FILE_TYPE = {
    "aedat4": "aedat",
    "evt2": "evt",
    "evt3": "evt",
    "dat": "dat",
    "es": "es",
    "csv": "csv",
}
"""Our format name -> faery's file type, for the formats faery reads and writes."""

WIDEST_SENSOR = (32768, 32768)
"""Size faery checks coordinates against when a file states none: every x, y the event dtype's
int16 holds (a larger one is refused, not wrapped); the true size (the caller's, or inferred)
is checked by `io`, whose error names the event and raises SensorSizeError."""

EVT_WORD_BYTES = {"evt2": 4, "evt2.1": 8, "evt3": 2}

MAX_GAP_US = {"dat": 1 << 32}
"""DAT stores 32-bit times; faery unwraps one period, so a longer gap would be lost."""

EVT3_MAX_SIDE = 1 << 11
"""EVT3 addresses are 11 bits; faery's encoder accepts up to 4095 and wraps x, y past 2047."""

EVT3_PERIOD_US = 1 << 12
EVT3_PERIODS_PER_WRAP = 1 << 12

ES_US_PER_OVERFLOW_BYTE = 127
ES_MAX_OVERFLOW_BYTES = 1 << 26
"""Event Stream spends one byte per 127 us of silence; refuse files that would be mostly that."""


def _faery_packets(path: Path, **decoder_options):
    """A PacketReader decoding the whole file with faery (faery cannot seek by time)."""

    def packets(t_start: int | None, t_stop: int | None) -> Iterator[np.ndarray]:
        with library_errors(path, "cannot decode"):
            for packet in faery.events_stream_from_file(path, **decoder_options):
                yield to_events(packet, "on")

    return packets


def _sensor(dimensions: tuple[int, int] | None) -> SensorSize | None:
    return None if dimensions is None else (int(dimensions[0]), int(dimensions[1]), 2)


def open_aedat4(path: Path) -> OpenedFile:
    """An iniVation AEDAT4 file: the first event track, its size, epoch timestamps kept."""
    with library_errors(path, "not a readable AEDAT4 file"):
        decoder = faery.events_stream_from_file(path, file_type="aedat")
        dimensions = decoder.dimensions()
    return OpenedFile(
        format="aedat4",
        sensor_size=_sensor(dimensions),
        packets=_faery_packets(path, file_type="aedat", track_id=decoder.track_id),
        metadata={"track_id": decoder.track_id},
    )


def open_evt(path: Path, version_asked: str | None) -> OpenedFile:
    """A Prophesee EVT2/EVT3 .raw file; the version comes from its header."""
    header = read_percent_header(path)
    if not header.lines and version_asked is None:
        raise EventsError(
            f"{path}: no EVT header ('% evt ...' lines); if this is headerless EVT data, "
            "pass format='evt2' or format='evt3'"
        )
    geometry = header.geometry()
    fallback = geometry or WIDEST_SENSOR
    with (
        library_errors(path, "not a readable EVT file"),
        faery.evt.Decoder(path, fallback, version_asked) as decoder,
    ):
        version = decoder.version
    if version_asked is not None and version != version_asked:
        raise EventsError(f"{path}: header says {version}, but format={version_asked!r} was asked")
    partial = partial_record_bytes(path.stat().st_size, header.data_offset, EVT_WORD_BYTES[version])
    return OpenedFile(
        format=version,
        sensor_size=_sensor(geometry),
        packets=_faery_packets(
            path, file_type="evt", version_fallback=version, dimensions_fallback=fallback
        ),
        metadata={"header": header.lines},
        damage=_cut_record(partial, f"{version} word"),
    )


def open_cd_dat(path: Path, header: PercentHeader, event_size: int) -> OpenedFile:
    """A Prophesee DAT file of CD events (type 0x0C)."""
    geometry = header.geometry()
    fallback = geometry or WIDEST_SENSOR
    partial = partial_record_bytes(path.stat().st_size, header.data_offset + 2, event_size)
    return OpenedFile(
        format="dat",
        sensor_size=_sensor(geometry),
        packets=_faery_packets(path, file_type="dat", dimensions_fallback=fallback),
        metadata={"event_type": "cd", "header": header.lines},
        damage=_cut_record(partial, "DAT event"),
    )


def open_es(path: Path) -> OpenedFile:
    """An Event Stream (.es) file of DVS or ATIS events (ATIS exposure events are dropped)."""
    with (
        library_errors(path, "not a readable Event Stream file"),
        faery.es.Decoder(path, 0) as decoder,
    ):
        event_type, dimensions = decoder.event_type, decoder.dimensions
    if event_type not in ("dvs", "atis"):
        raise EventsError(f"{path}: Event Stream type {event_type!r} holds no DVS events")
    partial = es_partial_record_bytes(path, event_type)
    return OpenedFile(
        format="es",
        sensor_size=_sensor(dimensions),
        packets=_faery_packets(path, file_type="es"),
        metadata={"event_type": event_type},
        damage=_cut_record(partial, "Event Stream event"),
    )


CSV_COLUMNS = {"t": ("t",), "x": ("x",), "y": ("y",), "on": ("on", "p", "polarity")}
"""Column names a CSV header may give each field (faery's are t, x@W, y@H, on)."""


def csv_columns(path: Path, header: str) -> dict[str, int]:
    """The index of each field's column in a CSV ``header``, so that columns in any order are
    read as what their names say; EventsError naming the file when a field has no column."""
    names = [re.sub(r"@\d+$", "", name.strip().lower()) for name in header.split(",")]
    found = {}
    for field, accepted in CSV_COLUMNS.items():
        where = [i for i, name in enumerate(names) if name in accepted]
        if not where:
            raise EventsError(
                f"{path}: CSV header {header!r} has no column for {field!r} "
                f"(expected one of {', '.join(accepted)})"
            )
        found[field] = where[0]
    return found


def open_csv(path: Path) -> OpenedFile:
    """A CSV file of t,x,y,on rows, or the columns its header names in any order; faery's header
    't,x@W,y@H,on' gives the sensor size."""
    with open(path, "rb") as f:
        first_line = f.readline(4096).decode("utf-8", errors="replace").strip()
    has_header = not first_line[:1].isdigit()
    match = re.search(r"x@(\d+)", first_line), re.search(r"y@(\d+)", first_line)
    geometry = (int(match[0].group(1)), int(match[1].group(1))) if all(match) else None
    fallback = geometry or WIDEST_SENSOR
    properties = faery.CsvProperties.default()
    properties.has_header = has_header
    if has_header:
        columns = csv_columns(path, first_line)
        properties.t_index, properties.x_index = columns["t"], columns["x"]
        properties.y_index, properties.on_index = columns["y"], columns["on"]
    return OpenedFile(
        format="csv",
        sensor_size=_sensor(geometry),
        packets=_faery_packets(
            path, file_type="csv", dimensions_fallback=fallback, csv_properties=properties
        ),
        metadata={"header": first_line if has_header else None},
    )


def _cut_record(partial_bytes: int, record: str) -> str | None:
    if partial_bytes == 0:
        return None
    return f"truncated: the file ends {partial_bytes} byte(s) into a {record}"


def _faery_arrays(events: np.ndarray) -> Iterator[np.ndarray]:
    for part in slices(events):
        packet = np.empty(len(part), dtype=faery.EVENTS_DTYPE)
        packet["t"] = part["t"]
        packet["x"] = part["x"]
        packet["y"] = part["y"]
        packet["on"] = part["p"]
        yield packet


def _check_es_size(path: Path, events: np.ndarray) -> None:
    if len(events) == 0:
        return
    t = events["t"]
    overflow_bytes = int(t[0]) // ES_US_PER_OVERFLOW_BYTE
    overflow_bytes += int(np.sum(np.diff(t) // ES_US_PER_OVERFLOW_BYTE))
    if overflow_bytes > ES_MAX_OVERFLOW_BYTES:
        raise EventsError(
            f"{path}: Event Stream stores time from 0 at one byte per {ES_US_PER_OVERFLOW_BYTE} us "
            f"of silence; these events (t from {int(t[0])} to {int(t[-1])}) would need "
            f"{overflow_bytes} such bytes. Subtract the first timestamp or use another format"
        )


def _check_evt3_wraps(path: Path, events: np.ndarray) -> None:
    """Refuse events whose EVT3 file faery would decode with lost time.

    faery's EVT3 decoder unwraps the 24-bit time only on consecutive TIME_HIGH words
    (period 4095 then period 0, as cameras write them), but its encoder writes TIME_HIGH only
    where events are. So every 2**24 us wrap after the first event needs an event in the last
    4096 us period before it and one in the first period after it (true of camera data).
    Checked against faery 0.7.1 round trips.
    """
    if len(events) < 2:
        return
    period = (events["t"] - events["t"][0]) // EVT3_PERIOD_US
    before, after = period[:-1], period[1:]
    crosses = after // EVT3_PERIODS_PER_WRAP != before // EVT3_PERIODS_PER_WRAP
    consecutive = (before % EVT3_PERIODS_PER_WRAP == EVT3_PERIODS_PER_WRAP - 1) & (
        after == before + 1
    )
    bad = np.flatnonzero(crosses & ~consecutive)
    if bad.size:
        i = int(bad[0]) + 1
        raise EventsError(
            f"{path}: evt3 (faery's encoder) loses time across a 2**24 us wrap unless events "
            f"fall in the 4096 us on both sides of it: event {i} (t={int(events['t'][i])}) "
            f"follows event {i - 1} (t={int(events['t'][i - 1])}); use evt2, aedat4 or hdf5"
        )


def write(path: Path, events: np.ndarray, sensor_size: SensorSize, name: str) -> None:
    """Write validated events with faery's encoder; EVT and DAT keep t0 in their header."""
    check_vendor_encodable(path, events, name, MAX_GAP_US.get(name))
    if name == "es":
        _check_es_size(path, events)
    if name == "evt3":
        if max(sensor_size[:2]) > EVT3_MAX_SIDE:
            raise EventsError(
                f"{path}: evt3 addresses pixels with 11 bits; sensor size {sensor_size} is wider "
                f"or taller than {EVT3_MAX_SIDE}"
            )
        _check_evt3_wraps(path, events)
    options: dict = {"file_type": FAERY_FILE_TYPE[name]}
    if name in ("evt2", "evt3"):
        options["version"] = name
    if name == "es":
        options["zero_t0"] = False  # ES has no header field for t0: store absolute times
    with library_errors(path, f"cannot write {name}"):
        faery.file_encoder.events_to_file(
            _faery_arrays(events), path, dimensions=sensor_size[:2], **options
        )
