"""Random augmentations with their randomness passed in: drops and jitters.

The tonic-compatible callables draw the random parameters (from np.random, in tonic's order, so
a seeded run matches tonic's); these pure functions apply them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from eventsnn.encoding._boundary import checked_events
from eventsnn.encoding.filters import select


def drop_events(events: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """The events without those at `indices` (tonic's DropEvent after choosing them)."""
    events = checked_events(events)
    keep = np.ones(len(events), bool)
    keep[indices] = False
    return select(events, keep)


def drop_time_interval(events: np.ndarray, t_start: float, t_end: float) -> np.ndarray:
    """The events outside [t_start, t_end] (tonic's DropEventByTime after choosing it)."""
    events = checked_events(events)
    t = events["t"]
    return select(events, ~((t >= t_start) & (t <= t_end)))


def drop_area(events: np.ndarray, corner: tuple[int, int], size: tuple[int, int]) -> np.ndarray:
    """The events outside the box [corner, corner + size) (tonic's DropEventByArea)."""
    events = checked_events(events)
    (x0, y0), (w, h) = corner, size
    x, y = events["x"], events["y"]
    inside = (x >= x0) & (y >= y0) & (x <= x0 + w - 1) & (y <= y0 + h - 1)
    return select(events, ~inside)


def spatial_jitter(
    events: np.ndarray,
    shifts: np.ndarray,
    sensor_size: Sequence[int],
    clip_outliers: bool = False,
) -> np.ndarray:
    """Add shifts[:, 0] to x and shifts[:, 1] to y (truncated to integers, as tonic).

    With clip_outliers, events moved off the sensor are dropped; otherwise they stay, and a
    later transform that knows the sensor raises EventsError for them.
    """
    events = checked_events(events).copy()
    events["x"] = events["x"] + shifts[:, 0]
    events["y"] = events["y"] + shifts[:, 1]
    if clip_outliers:
        x, y = events["x"], events["y"]
        events = events[(x >= 0) & (x < sensor_size[0]) & (y >= 0) & (y < sensor_size[1])]
    return events


def time_jitter(
    events: np.ndarray,
    shifts: np.ndarray,
    clip_negative: bool = True,
    sort_timestamps: bool = False,
) -> np.ndarray:
    """Add shifts to t (truncated to integers, as tonic); drop negative times; sort if asked.

    Unsorted output (sort_timestamps=False) makes this package's other functions raise
    EventsError, as they need time order.
    """
    events = checked_events(events).copy()
    events["t"] = events["t"] + shifts
    if clip_negative:
        events = events[events["t"] >= 0]
    if sort_timestamps:
        events = events[np.argsort(events["t"])]
    return events
