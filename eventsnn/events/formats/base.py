"""What every format reader hands back, and the conversions and error wrapping they share."""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from eventsnn.events.core import EVENT_DTYPE, EventsError, SensorSize

PacketReader = Callable[[int | None, int | None], Iterator[np.ndarray]]
"""(t_start, t_stop) -> event packets in file order; may skip packets outside the range."""

RangeReader = Callable[[int | None, int | None], np.ndarray]
"""(t_start, t_stop) -> exactly the events with t_start <= t < t_stop, in one array."""


@dataclass(frozen=True)
class TimeIndex:
    """Where times fall in a file that can seek by time: for cutting a recording into parts."""

    first_t: int
    last_t: int
    events_before: Callable[[int], int]
    """t -> how many events are earlier than t (binary search: reads about log2(n) of them)."""


CHUNK_EVENTS = 1 << 20
"""Events converted or written at a time, to bound the extra memory of a conversion."""


@dataclass
class OpenedFile:
    """A file whose header has been read: what it holds and how to decode its events."""

    format: str
    sensor_size: SensorSize | None
    """None when the file does not store one (Gen1 DAT, header-less CSV, bare .npy)."""
    packets: PacketReader
    metadata: dict[str, Any] = field(default_factory=dict)
    damage: str | None = None
    """What is wrong with the end of the file when the decoder would hide it (a cut record)."""
    read_range: RangeReader | None = None
    """Formats that can seek by time read a range into one array, without a second copy."""
    time_index: Callable[[], TimeIndex | None] | None = None
    """Formats that can seek by time also tell where times fall (reading a few events, or a
    small .npy file whole; None for a file without events)."""


@contextmanager
def library_errors(path: Path, what: str) -> Iterator[None]:
    """Turn any failure of a third-party reader or writer into an EventsError naming the file."""
    try:
        yield
    except (EventsError, KeyboardInterrupt, SystemExit, GeneratorExit):
        raise
    except BaseException as error:  # faery's Rust panics derive from BaseException
        detail = " ".join(str(error).split()) or type(error).__name__
        raise EventsError(f"{path}: {what}: {detail}") from error


def to_events(packet: np.ndarray, polarity: str = "p") -> np.ndarray:
    """Copy a library's structured packet (fields x, y, t and `polarity`) into EVENT_DTYPE."""
    events = np.empty(len(packet), dtype=EVENT_DTYPE)
    events["x"] = packet["x"]
    events["y"] = packet["y"]
    events["t"] = packet["t"]
    events["p"] = packet[polarity] != 0
    return events


def aligned_blocks(lo: int, hi: int, size: int) -> Iterator[tuple[int, int]]:
    """[start, stop) blocks covering [lo, hi) whose inner boundaries are multiples of `size`.

    Boundaries on multiples keep a file's chunks (whose sizes divide `size`) in one block each.
    """
    start = lo
    while start < hi:
        stop = min(hi, (start // size + 1) * size)
        yield start, stop
        start = stop


def slices(events: np.ndarray, size: int = CHUNK_EVENTS) -> Iterator[np.ndarray]:
    """Consecutive views of at most `size` events (no copies)."""
    for start in range(0, len(events), size):
        yield events[start : start + size]


def check_vendor_encodable(path: Path, events: np.ndarray, name: str, max_gap_us: int | None):
    """Refuse events a vendor encoder would store wrongly: negative t, too long silent gaps."""
    if len(events) == 0:
        return
    t = events["t"]
    if t[0] < 0:
        raise EventsError(f"{path}: {name} cannot store negative timestamps (event 0 has t={t[0]})")
    if max_gap_us is not None and len(t) > 1:
        gaps = np.flatnonzero(np.diff(t) >= max_gap_us)
        if gaps.size:
            i = int(gaps[0]) + 1
            raise EventsError(
                f"{path}: {name} cannot store a gap of {max_gap_us} us or more between events "
                f"(the encoder writes no time words in between): event {i} has t={int(t[i])}, "
                f"event {i - 1} has t={int(t[i - 1])}"
            )


class _LazyColumn:
    """A sorted column on disk (h5py dataset, memory map) that `bisect` probes element-wise."""

    def __init__(self, column) -> None:
        self.column = column

    def __len__(self) -> int:
        return len(self.column)

    def __getitem__(self, i: int) -> int:
        return int(self.column[i])


def time_index_of(t_column) -> TimeIndex | None:
    """The `TimeIndex` of a sorted t column on disk that stays readable (a memory map)."""
    column = _LazyColumn(t_column)
    if len(column) == 0:
        return None
    return TimeIndex(
        first_t=column[0],
        last_t=column[len(column) - 1],
        events_before=lambda t: bisect.bisect_left(column, t),
    )


def index_range(t_column, t_start: int | None, t_stop: int | None) -> tuple[int, int]:
    """Indices [lo, hi) of the events with t_start <= t < t_stop, by binary search.

    Only about log2(n) elements are read, so a range of a file on disk costs no full load.
    """
    column = _LazyColumn(t_column)
    lo = 0 if t_start is None else bisect.bisect_left(column, t_start)
    hi = len(column) if t_stop is None else bisect.bisect_left(column, t_stop, lo=lo)
    return lo, hi
