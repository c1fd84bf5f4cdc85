"""Events to a voxel grid: polarity spread over time bins with bilinear weights (Zhu 2019)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from eventsnn.encoding import _kernels
from eventsnn.encoding._boundary import event_array, raise_bad_event
from eventsnn.events import EventsError, as_sensor_size


def to_voxel_grid(events: np.ndarray, sensor_size: Sequence[int], n_time_bins: int) -> np.ndarray:
    """Voxel grid (n_time_bins, 1, H, W) float64, equal to tonic's `to_voxel_grid_numpy`.

    Each event adds +1 (ON) or -1 (OFF) split between the two nearest bins by its normalised time
    n_time_bins * (t - t0) / (t_last - t0). As in tonic, events at t_last land at position
    n_time_bins and fall outside the grid. Where tonic is wrong we differ (tested): tonic turns
    bool OFF polarities into +1 (`pols[pols == 0] = -1` on a bool array), and divides by zero on a
    zero-duration recording; here OFF is -1 and a zero-duration recording puts every event in
    bin 0. No events give a zero grid. Unsorted or out-of-sensor events raise EventsError.
    """
    if n_time_bins < 1:
        raise EventsError(f"n_time_bins must be >= 1, got {n_time_bins}")
    events = event_array(events)
    width, height, _ = as_sensor_size(sensor_size)
    grid = np.zeros(n_time_bins * height * width, np.float64)
    status = _kernels.accumulate_voxels(events, n_time_bins, width, height, grid)
    if status != _kernels.ALL_VALID:
        raise_bad_event(events, sensor_size, status)
    return grid.reshape(n_time_bins, 1, height, width)
