"""Events to frames (T, P, H, W): counts per pixel and polarity in time or event-count slices."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import DTypeLike

from eventsnn.encoding import _kernels, slicing
from eventsnn.encoding._boundary import event_array, raise_bad_event
from eventsnn.events import EventsError, as_sensor_size


def _slice_bounds(
    events: np.ndarray,
    time_window: float | None,
    event_count: int | None,
    n_time_bins: int | None,
    n_event_bins: int | None,
    overlap: float,
    include_incomplete: bool,
    start_time: float | None,
    end_time: float | None,
) -> slicing.Bounds:
    if time_window is not None:
        return slicing.by_time_window(
            events, time_window, overlap, include_incomplete, start_time, end_time
        )
    if event_count is not None:
        return slicing.by_event_count(len(events), event_count, overlap, include_incomplete)
    if n_time_bins is not None:
        return slicing.by_time_bins(events, n_time_bins, overlap)
    return slicing.by_event_bins(len(events), n_event_bins, overlap)


def _n_empty_frames(n_time_bins: int | None, n_event_bins: int | None) -> int:
    return n_time_bins or n_event_bins or 1


def to_frame(
    events: np.ndarray,
    sensor_size: Sequence[int],
    time_window: float | None = None,
    event_count: int | None = None,
    n_time_bins: int | None = None,
    n_event_bins: int | None = None,
    overlap: float = 0,
    include_incomplete: bool = False,
    start_time: float | None = None,
    end_time: float | None = None,
    dtype: DTypeLike = np.int16,
    merge_polarities: bool = False,
) -> np.ndarray:
    """Count events into frames of shape (T, P, H, W), equal to tonic's `to_frame_numpy`.

    Exactly one of time_window (us), event_count, n_time_bins, n_event_bins chooses the slicing;
    overlap is in us, events, or a fraction of a bin accordingly. Audio events (y = 0, sensor
    (channels, 1, P)) give (T, P, 1, channels). The default int16 counts wrap past 32767 like
    tonic's; pass dtype=np.float32 for float frames. merge_polarities counts both polarities
    into one channel (T, 1, H, W) whatever the sensor's polarity count.

    Well-defined edge cases: no events gives zero frames (n_time_bins or n_event_bins of them, else
    one); a window longer than the recording gives one frame with every event; a zero-duration
    recording with n_time_bins gives empty frames (tonic's bins are duration // n long, so events
    in the last duration % n us, or at the very end, fall in no bin). A one-polarity sensor merges
    polarities only if the events hold a single polarity (else EventsError, as tonic). Unsorted
    events or coordinates outside the sensor raise EventsError naming the event.
    """
    chosen = [v is not None for v in (time_window, event_count, n_time_bins, n_event_bins)]
    if sum(chosen) != 1:
        raise EventsError(
            "set exactly one of time_window, event_count, n_time_bins, n_event_bins; "
            f"got time_window={time_window}, event_count={event_count}, "
            f"n_time_bins={n_time_bins}, n_event_bins={n_event_bins}"
        )
    events = event_array(events)
    width, height, n_pol = as_sensor_size(sensor_size)
    n_pol = 1 if merge_polarities else n_pol
    if len(events) == 0:
        n_frames = _n_empty_frames(n_time_bins, n_event_bins)
        return np.zeros((n_frames, n_pol, height, width), dtype)
    starts, ends = _slice_bounds(
        events,
        time_window,
        event_count,
        n_time_bins,
        n_event_bins,
        overlap,
        include_incomplete,
        start_time,
        end_time,
    )
    frames = np.zeros((len(starts), n_pol, height, width), dtype)
    status = _kernels.accumulate_frames(events, starts, ends, width, height, frames)
    if status == _kernels.MIXED_POLARITY and not merge_polarities:
        raise EventsError(
            f"sensor_size {tuple(sensor_size)} has one polarity but the events hold both; "
            "merge them first (MergePolarities) or use 2 polarities"
        )
    if status not in (_kernels.ALL_VALID, _kernels.MIXED_POLARITY):
        raise_bad_event(events, sensor_size, status)
    return frames


def to_image(
    events: np.ndarray, sensor_size: Sequence[int], dtype: DTypeLike = np.int16
) -> np.ndarray:
    """All events counted into one image (P, H, W), like tonic's ToImage."""
    return to_frame(events, sensor_size, event_count=max(len(events), 1), dtype=dtype)[0]
