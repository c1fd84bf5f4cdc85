"""Event filters (events in, events out): denoise and refractory period, as keep-masks.

Each filter is a mask function (which events survive) and a filter function (the surviving
events); the mask form lets the tonic-compatible callables return events in the caller's dtype.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from eventsnn.encoding import _kernels
from eventsnn.encoding._boundary import checked_extent, event_array
from eventsnn.events import EVENT_DTYPE, EventsError


def select(events: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """events[keep]: a numba record copy for EVENT_DTYPE (5x numpy's), numpy for other dtypes."""
    if events.dtype == EVENT_DTYPE and events.flags.c_contiguous:
        return _kernels.compact(events, keep)
    return events[keep]


def denoise_mask(
    events: np.ndarray, filter_time: float, sensor_size: Sequence[int] | None = None
) -> np.ndarray:
    """True for events with an event at a 4-neighbour pixel less than filter_time us before.

    Tonic's background-activity filter with one fix (tested): tonic starts every pixel's memory
    at filter_time instead of "never", so it also keeps isolated events with t < filter_time.
    sensor_size, when given, checks the coordinates; unsorted events raise EventsError.
    """
    events = event_array(events)
    if len(events) == 0:
        return np.zeros(0, bool)
    width, height = checked_extent(events, sensor_size)
    return _kernels.denoise_mask(events, np.float64(filter_time), width, height)


def denoise(
    events: np.ndarray, filter_time: float, sensor_size: Sequence[int] | None = None
) -> np.ndarray:
    """The events that `denoise_mask` keeps (see there)."""
    events = event_array(events)
    return select(events, denoise_mask(events, filter_time, sensor_size))


def refractory_mask(
    events: np.ndarray, delta: float, sensor_size: Sequence[int] | None = None
) -> np.ndarray:
    """True for events more than delta us after the previous event (kept or not) at their pixel.

    Tonic's RefractoryPeriod with one fix (tested): tonic starts every pixel's memory at -delta,
    which drops a pixel's first event when it comes at t = 0.
    """
    events = event_array(events)
    if len(events) == 0:
        return np.zeros(0, bool)
    width, height = checked_extent(events, sensor_size)
    return _kernels.refractory_mask(events, np.float64(delta), width, height)


def refractory_period(
    events: np.ndarray, delta: float, sensor_size: Sequence[int] | None = None
) -> np.ndarray:
    """The events that `refractory_mask` keeps (see there)."""
    events = event_array(events)
    return select(events, refractory_mask(events, delta, sensor_size))


def decimation_mask(
    events: np.ndarray, n: int, sensor_size: Sequence[int] | None = None
) -> np.ndarray:
    """True for every n-th event of each pixel (tonic's Decimation, which loops per event)."""
    if n < 1:
        raise EventsError(f"n must be >= 1, got {n}")
    events = event_array(events)
    if len(events) == 0:
        return np.zeros(0, bool)
    width, height = checked_extent(events, sensor_size)
    return _kernels.decimation_mask(events, n, width, height)


def decimate(events: np.ndarray, n: int, sensor_size: Sequence[int] | None = None) -> np.ndarray:
    """The events that `decimation_mask` keeps."""
    events = event_array(events)
    return select(events, decimation_mask(events, n, sensor_size))
