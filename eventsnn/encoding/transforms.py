"""Tonic-compatible callables: same class and parameter names as `tonic.transforms`.

Each is a frozen dataclass that drops into `tonic.transforms.Compose` or a tonic dataset's
`transform=`, accepts the event dtypes tonic's datasets produce (converted at the boundary), and
calls a pure function of this package. Switch from tonic by changing the import.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import DTypeLike

from eventsnn.encoding import filters, frames, voxel
from eventsnn.encoding._boundary import from_tonic_layout
from eventsnn.events import SensorSize


def _has_y(events: np.ndarray) -> bool:
    return "y" in (events.dtype.names or ())


def _inferred_sensor_size(events: np.ndarray) -> SensorSize:
    """tonic's guess when sensor_size is None: largest x and y plus one, distinct polarities."""
    if len(events) == 0:
        return (1, 1, 1)
    return (int(events["x"].max()) + 1, int(events["y"].max()) + 1, len(np.unique(events["p"])))


def _filtered(events: np.ndarray, mask: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """The caller's events (their own dtype) where mask(events in our dtype) is True."""
    return filters.select(events, mask(from_tonic_layout(events)))


def _sampled(value: float | tuple[float, float]) -> float:
    """tonic's `get_params`: a tuple (low, high) draws uniformly from np.random."""
    if isinstance(value, tuple):
        return int((value[1] - value[0]) * np.random.random_sample() + value[0])
    return value


@dataclass(frozen=True)
class ToFrame:
    """Events to frames (T, P, H, W) (or (T, P, channels) for audio without y): `to_frame`."""

    sensor_size: tuple[int, int, int] | None
    time_window: float | None = None
    event_count: int | None = None
    n_time_bins: int | None = None
    n_event_bins: int | None = None
    overlap: float = 0
    include_incomplete: bool = False
    start_time: float | None = None
    end_time: float | None = None
    dtype: DTypeLike = np.int16

    def __call__(self, events: np.ndarray) -> np.ndarray:
        ours = from_tonic_layout(events)
        out = frames.to_frame(
            ours,
            self.sensor_size or _inferred_sensor_size(ours),
            time_window=self.time_window,
            event_count=self.event_count,
            n_time_bins=self.n_time_bins,
            n_event_bins=self.n_event_bins,
            overlap=self.overlap,
            include_incomplete=self.include_incomplete,
            start_time=self.start_time,
            end_time=self.end_time,
            dtype=self.dtype,
        )
        return out if _has_y(events) else out[:, :, 0, :]


@dataclass(frozen=True)
class ToImage:
    """All events counted into one image (P, H, W): `to_image`."""

    sensor_size: tuple[int, int, int]

    def __call__(self, events: np.ndarray) -> np.ndarray:
        out = frames.to_image(from_tonic_layout(events), self.sensor_size)
        return out if _has_y(events) else out[:, 0, :]


@dataclass(frozen=True)
class ToVoxelGrid:
    """Events to a voxel grid (n_time_bins, 1, H, W), bilinear in time: `to_voxel_grid`."""

    sensor_size: tuple[int, int, int]
    n_time_bins: int

    def __call__(self, events: np.ndarray) -> np.ndarray:
        return voxel.to_voxel_grid(from_tonic_layout(events), self.sensor_size, self.n_time_bins)


@dataclass(frozen=True)
class Denoise:
    """Drop events with no 4-neighbour event in the last filter_time us: `filters.denoise`."""

    filter_time: float

    def __call__(self, events: np.ndarray) -> np.ndarray:
        return _filtered(events, lambda ev: filters.denoise_mask(ev, self.filter_time))


@dataclass(frozen=True)
class RefractoryPeriod:
    """Drop events within delta us of their pixel's previous event: `filters.refractory_period`.

    delta may be a (low, high) tuple, drawn per call from np.random as tonic does.
    """

    delta: float | tuple[float, float]

    def __call__(self, events: np.ndarray) -> np.ndarray:
        delta = _sampled(self.delta)
        return _filtered(events, lambda ev: filters.refractory_mask(ev, delta))
