"""The event array: tonic's structured dtype, construction helpers and boundary validation."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

EVENT_DTYPE = np.dtype([("x", "<i2"), ("y", "<i2"), ("t", "<i8"), ("p", "?")])
"""tonic's event dtype: x, y int16 pixel (or channel) coordinates, t int64 microseconds, p bool."""

SensorSize = tuple[int, int, int]
"""(width, height, polarities), as in tonic. Audio: (channels, 1, 1)."""


class EventsError(ValueError):
    """Bad event input: names the file, field or event index that is wrong."""


class SensorSizeError(EventsError):
    """Events, or a file, that do not fit the sensor size asked for (say, a model's)."""


def make_events(
    x: Sequence[int] | np.ndarray,
    y: Sequence[int] | np.ndarray,
    t: Sequence[int] | np.ndarray,
    p: Sequence[int] | np.ndarray,
) -> np.ndarray:
    """Build an event array from four equally long columns."""
    n = len(t)
    for name, col in (("x", x), ("y", y), ("p", p)):
        if len(col) != n:
            raise EventsError(f"field {name!r} has {len(col)} values, field 't' has {n}")
    events = np.empty(n, dtype=EVENT_DTYPE)
    for name, column in (("x", x), ("y", y), ("t", t)):
        events[name] = fitting(name, np.asarray(column))
    events["p"] = np.asarray(p) > 0  # 1/0 or 1/-1: positive is ON
    return events


def fitting(name: str, column: np.ndarray, where: str = "", offset: int = 0) -> np.ndarray:
    """``column`` if its values fit field ``name``'s type (no silent wrap-around or truncation),
    else EventsError naming ``where`` (a file), the field and the first bad index (+ offset)."""
    kind = EVENT_DTYPE[name]
    if column.dtype.kind not in "iu":
        if column.dtype.kind == "f" and len(column) and np.array_equal(column, np.round(column)):
            _check_int64(name, column, where, offset)  # infinities are "whole" too
            column = column.astype(np.int64)  # whole numbers given as floats
        elif len(column):
            raise EventsError(
                f"{where}field {name!r} holds {column.dtype} values that are not whole numbers "
                "(t in microseconds, x and y in pixels)"
            )
    if len(column) and not np.can_cast(column.dtype, kind):
        limits = np.iinfo(kind)
        outside = (column < limits.min) | (column > limits.max)
        if outside.any():
            bad = int(np.argmax(outside))
            raise EventsError(
                f"{where}field {name!r} at index {bad + offset} is {column[bad]}, which does "
                f"not fit {kind}"
            )
    return column


def _check_int64(name: str, column: np.ndarray, where: str, offset: int) -> None:
    """EventsError unless the whole floats of `column` convert to int64 (a cast wraps the
    others, infinities included, to its minimum without an error)."""
    outside = (column < -(2.0**63)) | (column >= 2.0**63)
    if outside.any():
        bad = int(np.argmax(outside))
        raise EventsError(
            f"{where}field {name!r} at index {bad + offset} is {column[bad]}, which does not fit "
            f"{EVENT_DTYPE[name]}"
        )


def empty_events() -> np.ndarray:
    """An event array with no events."""
    return np.empty(0, dtype=EVENT_DTYPE)


_RECORD = np.dtype((np.void, EVENT_DTYPE.itemsize))
"""EVENT_DTYPE's records as opaque bytes: numpy copies a structured array field by field (9 ms
a million events on this project's VM) and opaque records whole (0.8 ms)."""


def join_events(pieces: Sequence[np.ndarray]) -> np.ndarray:
    """Event arrays end to end as one new array (one piece: itself; none: no events), copied
    whole records at a time when all are EVENT_DTYPE."""
    if len(pieces) < 2:
        return pieces[0] if pieces else empty_events()
    if all(piece.dtype == EVENT_DTYPE for piece in pieces):
        return np.concatenate([piece.view(_RECORD) for piece in pieces]).view(EVENT_DTYPE)
    return np.concatenate(pieces)


def copy_events(events: np.ndarray) -> np.ndarray:
    """A copy of an event array, whole records at a time when it is EVENT_DTYPE."""
    if events.dtype == EVENT_DTYPE and events.ndim == 1:
        return events.view(_RECORD).copy().view(EVENT_DTYPE)
    return events.copy()


def as_sensor_size(sensor_size: Sequence[int]) -> SensorSize:
    """Normalise a sensor size to an (width, height, polarities) tuple of positive ints."""
    if len(sensor_size) != 3 or any(int(s) < 1 for s in sensor_size):
        raise EventsError(
            f"sensor_size must be (width, height, polarities) of positive ints, got {sensor_size!r}"
        )
    w, h, p = (int(s) for s in sensor_size)
    return (w, h, p)


def validate(
    events: np.ndarray, sensor_size: Sequence[int] | None = None, offset: int = 0
) -> np.ndarray:
    """Check dtype, time order and coordinates; return the events or raise EventsError.

    Called once at every boundary that takes events; inner code trusts validated arrays.
    The error names the field and the index of the first bad event, plus `offset` (the index
    of `events[0]` in a file read piece by piece).
    """
    if not isinstance(events, np.ndarray) or events.dtype.names is None:
        raise EventsError(
            f"events must be a structured numpy array with fields x, y, t, p; got {type(events)!r}"
        )
    missing = [f for f in ("x", "y", "t", "p") if f not in events.dtype.names]
    if missing:
        raise EventsError(f"events lack field(s) {missing}; have {list(events.dtype.names)}")
    for name in ("x", "y", "t", "p"):
        if events.dtype[name] != EVENT_DTYPE[name]:
            raise EventsError(
                f"field {name!r} has dtype {events.dtype[name]}, expected {EVENT_DTYPE[name]}"
            )
    if events.ndim != 1:
        raise EventsError(f"events must be one-dimensional, got shape {events.shape}")
    if len(events) == 0 or (len(events) >= SCAN_MIN_EVENTS and _all_valid(events, sensor_size)):
        return events
    t = events["t"]
    if len(t) > 1:
        bad = np.flatnonzero(t[1:] < t[:-1])
        if bad.size:
            i = int(bad[0]) + 1
            raise EventsError(
                f"field 't' is not sorted: event {offset + i} has t={int(t[i])} "
                f"< t={int(t[i - 1])} of event {offset + i - 1}"
            )
    if sensor_size is not None:
        w, h, _ = as_sensor_size(sensor_size)
        for name, limit in (("x", w), ("y", h)):
            col = events[name]
            bad = np.flatnonzero((col < 0) | (col >= limit))
            if bad.size:
                i = int(bad[0])
                raise SensorSizeError(
                    f"field {name!r} out of the sensor: event {offset + i} has "
                    f"{name}={int(col[i])}, sensor size {tuple(sensor_size)} allows 0..{limit - 1}"
                )
    return events


SCAN_MIN_EVENTS = 1 << 16
"""From this many events `validate` first checks in one numba pass (`events.scan`); below it
numba's one-time set-up in a process (~0.2 s) would outweigh the 4.5 ms a million it saves."""


def _all_valid(events: np.ndarray, sensor_size: Sequence[int] | None) -> bool:
    """Whether one fused pass finds every event sorted (and on the sensor); False may also
    mean a layout the kernel does not take, or negative coordinates with no sensor size."""
    if events.dtype != EVENT_DTYPE or not events.flags.c_contiguous:
        return False
    from eventsnn.events.scan import ALL_VALID, scan_events  # numba loads on first use

    anywhere = np.iinfo(np.int64).max
    width, height = (anywhere, anywhere) if sensor_size is None else as_sensor_size(sensor_size)[:2]
    return scan_events(events, width, height)[0] == ALL_VALID


@dataclass
class Recording:
    """Events read from a file, with the sensor size and what is known of the source."""

    events: np.ndarray
    sensor_size: SensorSize
    path: Path | None = None
    format: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    truncated: bool = False

    @property
    def duration_us(self) -> int:
        """Time from the first to the last event, in microseconds (0 when empty)."""
        if len(self.events) == 0:
            return 0
        return int(self.events["t"][-1] - self.events["t"][0])
