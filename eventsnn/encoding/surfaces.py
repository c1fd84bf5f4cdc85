"""Events to time surfaces: exp(-(t_now - t_last) / tau) per pixel and polarity, every dt."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from eventsnn.encoding import _kernels, slicing
from eventsnn.encoding._boundary import checked_extent, event_array
from eventsnn.events import EventsError, as_sensor_size


def to_timesurface(
    events: np.ndarray, sensor_size: Sequence[int], dt: float, tau: float
) -> np.ndarray:
    """Global time surfaces (T, P, H, W) float64 at the end of each dt window, as tonic's.

    Surface k is exp(-(t0 + (k + 1) dt - t_last) / tau), t_last being each pixel's latest event
    up to that window's end (0 where it never fired). Windows follow tonic's time slicing (an
    incomplete last window is left out). No events give one zero surface; dt <= 0 raises.
    """
    if dt <= 0:
        raise EventsError(f"dt must be > 0, got {dt}")
    events = event_array(events)
    width, height, n_pol = as_sensor_size(sensor_size)
    if len(events) == 0:
        return np.zeros((1, n_pol, height, width))
    checked_extent(events, sensor_size)
    _, ends = slicing.by_time_window(events, dt)
    last = _kernels.last_times(events, ends, np.empty((len(ends), n_pol, height, width)))
    start_t = events[0]["t"]
    for k in range(len(ends)):
        last[k] = np.exp(-((k + 1) * dt + start_t - last[k]) / tau)
    return last
