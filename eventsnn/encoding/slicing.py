"""Where frames start and end: tonic's four slicing rules as (starts, ends) event-index arrays.

Each rule reproduces tonic 1.7's slicer arithmetic operation for operation, so the same events
fall into the same frames. Quirks kept on purpose (documented in `frames.to_frame`): time bins
are `duration // n_bins` long, so events in the last `duration % n_bins` microseconds (and
always the last event when the division is exact) fall outside every bin; event bins hold
`n_events // n_bins` events, dropping the remainder.
"""

from __future__ import annotations

import numpy as np

from eventsnn.encoding import _kernels
from eventsnn.events import EventsError

Bounds = tuple[np.ndarray, np.ndarray]
"""(starts, ends): event-index bounds of each frame, both non-decreasing."""


def _window_bounds(events: np.ndarray, window_starts: np.ndarray, window: float) -> Bounds:
    """Index bounds of the time windows [start, start + window) (searchsorted, side left)."""
    window_starts = np.asarray(window_starts, dtype=np.float64)
    starts = _kernels.search_times(events, window_starts)
    ends = _kernels.search_times(events, window_starts + np.float64(window))
    return starts, ends


def by_time_window(
    events: np.ndarray,
    time_window: float,
    overlap: float = 0.0,
    include_incomplete: bool = False,
    start_time: float | None = None,
    end_time: float | None = None,
) -> Bounds:
    """Windows of time_window microseconds every time_window - overlap (tonic's SliceByTime).

    At least one window; a window longer than the recording gives one window with every event.
    """
    stride = time_window - overlap
    if time_window <= 0 or stride <= 0:
        raise EventsError(
            f"time_window must be > 0 and > overlap; got time_window={time_window}, "
            f"overlap={overlap}"
        )
    t_first = events[0]["t"] if start_time is None else start_time
    t_last = events[-1]["t"] if end_time is None else end_time
    duration = t_last - t_first
    rounding = np.ceil if include_incomplete else np.floor
    n_slices = max(int(rounding((duration - time_window) / stride) + 1), 1)
    window_starts = np.arange(n_slices) * stride + t_first
    return _window_bounds(events, window_starts, time_window)


def by_time_bins(events: np.ndarray, n_time_bins: int, overlap: float = 0.0) -> Bounds:
    """n_time_bins windows of (duration // n) * (1 + overlap) microseconds (SliceByTimeBins)."""
    if n_time_bins < 1 or not 0 <= overlap < 1:
        raise EventsError(
            f"n_time_bins must be >= 1 and 0 <= overlap < 1; got {n_time_bins}, {overlap}"
        )
    t_first = events[0]["t"]
    time_window = (events[-1]["t"] - t_first) // n_time_bins * (1 + overlap)
    stride = time_window * (1 - overlap)
    window_starts = np.arange(n_time_bins) * stride + t_first
    return _window_bounds(events, window_starts, time_window)


def by_event_count(
    n_events: int, event_count: int, overlap: int = 0, include_incomplete: bool = False
) -> Bounds:
    """Frames of event_count events every event_count - overlap events (SliceByEventCount)."""
    stride = event_count - overlap
    if event_count < 1 or stride <= 0:
        raise EventsError(
            f"event_count must be >= 1 and > overlap; got event_count={event_count}, "
            f"overlap={overlap}"
        )
    count = min(event_count, n_events)
    rounding = np.ceil if include_incomplete else np.floor
    n_slices = int(rounding((n_events - count) / stride) + 1)
    starts = (np.arange(n_slices) * stride).astype(np.int64)
    return starts, starts + count


def by_event_bins(n_events: int, n_event_bins: int, overlap: float = 0.0) -> Bounds:
    """n_event_bins frames of (n_events // n) * (1 + overlap) events (SliceByEventBins)."""
    if n_event_bins < 1 or not 0 <= overlap < 1:
        raise EventsError(
            f"n_event_bins must be >= 1 and 0 <= overlap < 1; got {n_event_bins}, {overlap}"
        )
    count = int(n_events // n_event_bins * (1 + overlap))
    stride = int(count * (1 - overlap))
    starts = np.arange(n_event_bins, dtype=np.int64) * stride
    return starts, starts + count
