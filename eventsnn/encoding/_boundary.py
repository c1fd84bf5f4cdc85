"""Boundary checks shared by every encoding function: dtype, layout, sortedness, sensor bounds.

The pure functions accept `EVENT_DTYPE` arrays only; the tonic-compatible callables also accept
the other dtypes tonic's datasets produce (int64 fields, other field orders, audio without `y`)
and convert them here. Sortedness and bounds are checked inside the numba kernels (one fused
pass); on a failure `events.validate` is called to raise its `EventsError` naming the event.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from eventsnn.events import EVENT_DTYPE, EventsError, as_sensor_size, validate
from eventsnn.events.scan import ALL_VALID, scan_events


def event_array(events: np.ndarray) -> np.ndarray:
    """The events as a contiguous 1-D EVENT_DTYPE array (a copy only if the layout differs).

    Raises EventsError (from `validate`) when a field is missing or has another type.
    """
    if isinstance(events, np.ndarray) and events.dtype == EVENT_DTYPE and events.ndim == 1:
        return np.ascontiguousarray(events)
    validate(events[:0] if isinstance(events, np.ndarray) and events.ndim == 1 else events)
    return _copied_by_name(events)


def _copied_by_name(events: np.ndarray) -> np.ndarray:
    # field by field: numpy's astype between structured dtypes matches fields by position
    out = np.zeros(len(events), EVENT_DTYPE)
    for name in EVENT_DTYPE.names:
        if name in events.dtype.names:
            out[name] = events[name]
    return out


def raise_bad_event(events: np.ndarray, sensor_size: Sequence[int] | None, index: int) -> None:
    """Raise the EventsError that `validate` gives for the bad event a kernel found."""
    validate(events, sensor_size)
    raise EventsError(f"event {index} is unsorted or outside the sensor {sensor_size}")


def checked_extent(events: np.ndarray, sensor_size: Sequence[int] | None) -> tuple[int, int]:
    """Check sortedness (and bounds when sensor_size is given); return (width, height).

    Without a sensor size the extent is taken from the data (largest x and y plus one), as
    tonic's filters do.
    """
    if sensor_size is None:
        big = np.iinfo(np.int64).max
        bad, max_x, max_y = scan_events(events, big, big)
        width, height = max_x + 1, max_y + 1
    else:
        width, height, _ = as_sensor_size(sensor_size)
        bad, _, _ = scan_events(events, width, height)
    if bad != ALL_VALID:
        raise_bad_event(events, sensor_size, bad)
    return max(int(width), 1), max(int(height), 1)


def checked_events(events: np.ndarray) -> np.ndarray:
    """Events as EVENT_DTYPE, checked for dtype and time order (no sensor bounds)."""
    events = event_array(events)
    if len(events):
        checked_extent(events, None)
    return events


def from_tonic_layout(events: np.ndarray) -> np.ndarray:
    """Convert any of tonic's event dtypes (x, t, p and optional y, any integer types) to ours.

    Audio events without `y` get y = 0. Values that do not fit int16 coordinates raise.
    """
    if isinstance(events, np.ndarray) and events.dtype == EVENT_DTYPE and events.ndim == 1:
        return np.ascontiguousarray(events)
    names = getattr(getattr(events, "dtype", None), "names", None)
    if names is None or not {"x", "t", "p"} <= set(names):
        raise EventsError(
            f"events must be a structured array with fields x, t, p (and y); got {names!r}"
        )
    for name in ("x", "y"):
        column = events[name] if name in names else None
        if column is not None and len(column) and (column.min() < -32768 or column.max() > 32767):
            raise EventsError(f"field {name!r} does not fit int16 coordinates")
    out = _copied_by_name(events)
    out["p"] = events["p"] > 0
    return out
