"""Tonic-compatible callables: same class and parameter names as `tonic.transforms`.

Each is a frozen dataclass that drops into `tonic.transforms.Compose` or a tonic dataset's
`transform=`, accepts the event dtypes tonic's datasets produce (converted at the boundary), and
calls a pure function of this package. Switch from tonic by changing the import: tonic's
transforms that are not a hot path (Compose, NumpyAsType, ToSparseTensor, ToBinaRep, ...) are
re-exported from tonic unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import DTypeLike

# tonic's own, re-exported so `from eventsnn.encoding.transforms import X` covers tonic's set
from tonic.transforms import (
    Compose,
    DropPixel,
    EventDownsampling,
    EventDrop,
    NumpyAsType,
    RandomDropPixel,
    Repeat,
    ToAveragedTimesurface,
    ToBinaRep,
    ToOneHotEncoding,
    ToSparseTensor,
    UniformNoise,
)

from eventsnn.encoding import augment, filters, frames, geometry, surfaces, voxel
from eventsnn.encoding._boundary import from_tonic_layout
from eventsnn.events import EVENT_DTYPE, EventsError, SensorSize


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


def _in_callers_layout(events: np.ndarray, like: np.ndarray) -> np.ndarray:
    """Our events converted back to the caller's dtype (polarity as 0 / 1)."""
    if events.dtype == like.dtype:
        return events
    out = np.zeros(len(events), like.dtype)
    for name in like.dtype.names:
        if name in EVENT_DTYPE.names:
            out[name] = events[name]
    return out


def _mapped(events: np.ndarray, function: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """function (on our dtype) applied to the caller's events, returned in their dtype."""
    return _in_callers_layout(function(from_tonic_layout(events)), events)


def _ratio(value: float | tuple[float, float]) -> float:
    """A (low, high) tuple drawn uniformly from np.random, as tonic's transforms do."""
    if isinstance(value, tuple):
        return (value[1] - value[0]) * np.random.random_sample() + value[0]
    return value


@dataclass(frozen=True)
class ToFrame:
    """Events to frames (T, P, H, W) (or (T, P, channels) for audio without y): `to_frame`.

    Beyond tonic's parameters: dtype (int16 as tonic, or e.g. float32) and merge_polarities.
    """

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
    merge_polarities: bool = False

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
            merge_polarities=self.merge_polarities,
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

    delta may be a (low, high) tuple, drawn per call from np.random (and truncated) as tonic.
    """

    delta: float | tuple[float, float]

    def __call__(self, events: np.ndarray) -> np.ndarray:
        delta = int(_ratio(self.delta)) if isinstance(self.delta, tuple) else self.delta
        return _filtered(events, lambda ev: filters.refractory_mask(ev, delta))


@dataclass(frozen=True)
class ToTimesurface:
    """Global time surfaces (T, P, H, W) every dt with decay tau: `surfaces.to_timesurface`."""

    sensor_size: tuple[int, int, int]
    dt: float
    tau: float

    def __call__(self, events: np.ndarray) -> np.ndarray:
        ours = from_tonic_layout(events)
        return surfaces.to_timesurface(ours, self.sensor_size, self.dt, self.tau)


@dataclass(frozen=True)
class CenterCrop:
    """Crop the centre `size` (int or (w, h)) of the sensor; larger sizes pad: `geometry.crop`."""

    sensor_size: tuple[int, int, int]
    size: int | tuple[int, int]

    def __call__(self, events: np.ndarray) -> np.ndarray:
        size = (self.size, self.size) if isinstance(self.size, int) else tuple(self.size)
        origin = geometry.center_crop_origin(self.sensor_size, size)
        return _mapped(events, lambda ev: geometry.crop(ev, origin, size))


@dataclass(frozen=True)
class RandomCrop:
    """Crop a target_size box at a random place (np.random, as tonic): `geometry.crop`."""

    sensor_size: tuple[int, int, int]
    target_size: tuple[int, int]

    def __call__(self, events: np.ndarray) -> np.ndarray:
        w, h = self.target_size
        x0 = int(np.random.rand() * (self.sensor_size[0] - w))
        y0 = int(np.random.rand() * (self.sensor_size[1] - h))
        return _mapped(events, lambda ev: geometry.crop(ev, (x0, y0), (w, h)))


@dataclass(frozen=True)
class CropTime:
    """Keep events with min <= t <= max (max None: the last event's time): `crop_time`.

    Unlike tonic's, the transform keeps no state: tonic stores the first recording's last time
    in `max` and then crops every later recording there.
    """

    min: float = 0
    max: float | None = None

    def __call__(self, events: np.ndarray) -> np.ndarray:
        return _mapped(events, lambda ev: geometry.crop_time(ev, self.min, self.max))


@dataclass(frozen=True)
class Downsample:
    """Scale time and space (or sensor_size to target_size, e.g. SHD 700 -> 70 channels)."""

    time_factor: float = 1
    spatial_factor: float | tuple[float, float] = 1
    sensor_size: tuple[int, int, int] | None = None
    target_size: tuple[int, int] | None = None

    def __call__(self, events: np.ndarray) -> np.ndarray:
        factor = self.spatial_factor
        if self.target_size is not None:
            if self.sensor_size is None:
                raise EventsError("Downsample: target_size needs sensor_size")
            factor = tuple(np.asarray(self.target_size) / self.sensor_size[:-1])
        return _mapped(events, lambda ev: geometry.downsample(ev, self.time_factor, factor))


@dataclass(frozen=True)
class MergePolarities:
    """Set every polarity to 0: `geometry.merge_polarities`."""

    def __call__(self, events: np.ndarray) -> np.ndarray:
        return _mapped(events, geometry.merge_polarities)


@dataclass(frozen=True)
class RandomFlipLR:
    """With probability p, mirror x (x' = width - 1 - x): `geometry.flip_lr`."""

    sensor_size: tuple[int, int, int]
    p: float = 0.5

    def __call__(self, events: np.ndarray) -> np.ndarray:
        if np.random.rand() <= self.p:
            return _mapped(events, lambda ev: geometry.flip_lr(ev, self.sensor_size[0]))
        return events.copy()


@dataclass(frozen=True)
class RandomFlipUD:
    """With probability p, mirror y (y' = height - 1 - y): `geometry.flip_ud`."""

    sensor_size: tuple[int, int, int]
    p: float = 0.5

    def __call__(self, events: np.ndarray) -> np.ndarray:
        if np.random.rand() <= self.p:
            return _mapped(events, lambda ev: geometry.flip_ud(ev, self.sensor_size[1]))
        return events.copy()


@dataclass(frozen=True)
class RandomFlipPolarity:
    """With probability p, swap ON and OFF for all events (tonic's behaviour)."""

    p: float = 0.5

    def __call__(self, events: np.ndarray) -> np.ndarray:
        if np.random.rand() <= self.p:
            return _mapped(events, geometry.flip_polarity)
        return events.copy()


@dataclass(frozen=True)
class RandomTimeReversal:
    """With probability p, play the events backwards: `geometry.time_reversal`."""

    p: float = 0.5
    flip_polarities: bool = True

    def __call__(self, events: np.ndarray) -> np.ndarray:
        if np.random.rand() < self.p:
            return _mapped(events, lambda ev: geometry.time_reversal(ev, self.flip_polarities))
        return events.copy()


@dataclass(frozen=True)
class DropEvent:
    """Drop a fraction p of the events (p may be a (low, high) range): `augment.drop_events`."""

    p: float | tuple[float, float]

    def __call__(self, events: np.ndarray) -> np.ndarray:
        n = len(events)
        indices = np.random.choice(n, int(_ratio(self.p) * n + 0.5), replace=False)
        return _mapped(events, lambda ev: augment.drop_events(ev, indices))


@dataclass(frozen=True)
class DropEventByTime:
    """Drop events in a random interval of duration_ratio times the recording's length."""

    duration_ratio: float | tuple[float, float] = 0.2

    def __call__(self, events: np.ndarray) -> np.ndarray:
        if len(events) == 0:
            return events.copy()
        t_end = events["t"].max()
        ratio = self.duration_ratio
        if isinstance(ratio, tuple):
            ratio = np.random.uniform(ratio[0], ratio[1])
        drop = t_end * ratio
        start = np.random.uniform(0.0, t_end - drop)
        return _mapped(events, lambda ev: augment.drop_time_interval(ev, start, start + drop))


@dataclass(frozen=True)
class DropEventByArea:
    """Drop events in a random box of area_ratio times the sensor's width and height.

    A (low, high) area_ratio is drawn from [low, high); tonic draws from [high, 1) (it passes
    `low and high` to np.random.uniform).
    """

    sensor_size: tuple[int, int, int]
    area_ratio: float | tuple[float, float] = 0.2

    def __call__(self, events: np.ndarray) -> np.ndarray:
        ratio = self.area_ratio
        if isinstance(ratio, tuple):
            ratio = np.random.uniform(ratio[0], ratio[1])
        w, h = int(self.sensor_size[0] * ratio), int(self.sensor_size[1] * ratio)
        corner = (
            np.random.randint(0, self.sensor_size[0] - w),
            np.random.randint(0, self.sensor_size[1] - h),
        )
        return _mapped(events, lambda ev: augment.drop_area(ev, corner, (w, h)))


@dataclass(frozen=True)
class SpatialJitter:
    """Move events by Gaussian shifts with covariance [[var_x, sigma_xy], [sigma_xy, var_y]]."""

    sensor_size: tuple[int, int, int]
    var_x: float = 1
    var_y: float = 1
    sigma_xy: float = 0
    clip_outliers: bool = False

    def __call__(self, events: np.ndarray) -> np.ndarray:
        covariance = [[self.var_x, self.sigma_xy], [self.sigma_xy, self.var_y]]
        shifts = np.random.multivariate_normal([0, 0], covariance, len(events))
        return _mapped(
            events,
            lambda ev: augment.spatial_jitter(ev, shifts, self.sensor_size, self.clip_outliers),
        )


@dataclass(frozen=True)
class TimeJitter:
    """Add Gaussian noise of std to each timestamp: `augment.time_jitter`."""

    std: float
    clip_negative: bool = True
    sort_timestamps: bool = False

    def __call__(self, events: np.ndarray) -> np.ndarray:
        shifts = np.random.normal(0, self.std, len(events))
        return _mapped(
            events,
            lambda ev: augment.time_jitter(ev, shifts, self.clip_negative, self.sort_timestamps),
        )


@dataclass(frozen=True)
class Decimation:
    """Keep every n-th event of each pixel: `filters.decimate`."""

    n: int

    def __call__(self, events: np.ndarray) -> np.ndarray:
        return _filtered(events, lambda ev: filters.decimation_mask(ev, self.n))


@dataclass(frozen=True)
class TimeSkew:
    """t' = t * coefficient + offset; (low, high) tuples draw from np.random: `time_skew`."""

    coefficient: float | tuple[float, float]
    offset: float | tuple[float, float] = 0

    def __call__(self, events: np.ndarray) -> np.ndarray:
        coefficient, offset = _ratio(self.coefficient), _ratio(self.offset)
        return _mapped(events, lambda ev: geometry.time_skew(ev, coefficient, offset))


@dataclass(frozen=True)
class TimeAlignment:
    """Shift times so the first event is at t = 0: `geometry.align_time`."""

    def __call__(self, events: np.ndarray) -> np.ndarray:
        return _mapped(events, geometry.align_time)


__all__ = [
    "CenterCrop",
    "Compose",
    "CropTime",
    "Decimation",
    "Denoise",
    "Downsample",
    "DropEvent",
    "DropEventByArea",
    "DropEventByTime",
    "DropPixel",
    "EventDownsampling",
    "EventDrop",
    "MergePolarities",
    "NumpyAsType",
    "RandomCrop",
    "RandomDropPixel",
    "RandomFlipLR",
    "RandomFlipPolarity",
    "RandomFlipUD",
    "RandomRotation",
    "RandomTimeReversal",
    "RefractoryPeriod",
    "Repeat",
    "SpatialJitter",
    "TimeAlignment",
    "TimeJitter",
    "TimeSkew",
    "ToAveragedTimesurface",
    "ToBinaRep",
    "ToFrame",
    "ToImage",
    "ToOneHotEncoding",
    "ToSparseTensor",
    "ToTimesurface",
    "ToVoxelGrid",
    "UniformNoise",
]


@dataclass(frozen=True)
class RandomRotation:
    """Rotate by an angle drawn from [-degrees, degrees] (np.random): `geometry.rotate`.

    Not in tonic; events rotated off the sensor are dropped.
    """

    sensor_size: tuple[int, int, int]
    degrees: float = 15.0

    def __call__(self, events: np.ndarray) -> np.ndarray:
        angle = np.random.uniform(-self.degrees, self.degrees)
        return _mapped(events, lambda ev: geometry.rotate(ev, self.sensor_size, angle))
