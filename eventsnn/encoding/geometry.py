"""Deterministic event-to-event transforms: crops, flips, polarity and time changes, scaling.

Each takes events and fixed parameters (the tonic-compatible callables draw any random ones) and
returns a new array; the input is never modified. Arithmetic follows tonic's (float products
truncated back to the integer fields) so results are identical.
"""

from __future__ import annotations

import numpy as np

from eventsnn.encoding._boundary import checked_events
from eventsnn.events import copy_events


def _checked_copy(events: np.ndarray) -> np.ndarray:
    return copy_events(checked_events(events))


def crop(events: np.ndarray, origin: tuple[int, int], size: tuple[int, int]) -> np.ndarray:
    """Events inside the box [origin, origin + size), moved so the box starts at (0, 0).

    A negative origin pads: the events move right/down by -origin (tonic's CenterCrop when the
    crop is larger than the sensor).
    """
    events = checked_events(events)
    (x0, y0), (w, h) = origin, size
    x, y = events["x"], events["y"]
    inside = (x >= max(x0, 0)) & (x < max(x0, 0) + w) & (y >= max(y0, 0)) & (y < max(y0, 0) + h)
    out = events[inside]
    out["x"] -= np.int16(x0)
    out["y"] -= np.int16(y0)
    return out


def center_crop_origin(sensor_size: tuple[int, ...], size: tuple[int, int]) -> tuple[int, int]:
    """Top-left corner of a centred crop of `size` (negative when the crop is larger)."""
    return (sensor_size[0] - size[0]) // 2, (sensor_size[1] - size[1]) // 2


def crop_time(events: np.ndarray, t_min: float = 0, t_max: float | None = None) -> np.ndarray:
    """Events with t_min <= t <= t_max (t_max None: up to the last event)."""
    events = checked_events(events)
    if len(events) == 0:
        return events.copy()
    t = events["t"]
    upper = t[-1] if t_max is None else t_max
    return events[(t >= t_min) & (t <= upper)]


def flip_lr(events: np.ndarray, width: int) -> np.ndarray:
    """Mirror x: x' = width - 1 - x."""
    events = _checked_copy(events)
    events["x"] = width - 1 - events["x"]
    return events


def flip_ud(events: np.ndarray, height: int) -> np.ndarray:
    """Mirror y: y' = height - 1 - y."""
    events = _checked_copy(events)
    events["y"] = height - 1 - events["y"]
    return events


def flip_polarity(events: np.ndarray) -> np.ndarray:
    """Swap ON and OFF for every event."""
    events = _checked_copy(events)
    events["p"] = ~events["p"]
    return events


def merge_polarities(events: np.ndarray) -> np.ndarray:
    """Every event OFF (polarity 0), for one-polarity sensors."""
    events = _checked_copy(events)
    events["p"] = False
    return events


def time_reversal(events: np.ndarray, flip_polarities: bool = True) -> np.ndarray:
    """Play the recording backwards: t' = max(t) - t, order reversed, polarities swapped."""
    events = _checked_copy(events)
    if len(events) == 0:
        return events
    events["t"] = events["t"].max() - events["t"]
    if flip_polarities:
        events["p"] = ~events["p"]
    return events[::-1].copy()


def downsample(
    events: np.ndarray,
    time_factor: float = 1,
    spatial_factor: float | tuple[float, float] = 1,
) -> np.ndarray:
    """Scale t by time_factor and x, y by spatial_factor, truncating to integers as tonic does.

    With spatial factors from a (target / sensor) size this is tonic's Downsample, e.g. SHD's
    700 audio channels to 70 with spatial_factor=0.1 (channel c -> c // 10).
    """
    events = time_skew(events, time_factor)
    if np.ndim(spatial_factor) == 0:
        spatial_factor = (spatial_factor, spatial_factor)
    fx, fy = spatial_factor
    events["x"] = events["x"] * fx
    events["y"] = events["y"] * fy
    return events


def time_skew(events: np.ndarray, coefficient: float, offset: float = 0) -> np.ndarray:
    """t' = t * coefficient + offset, truncated to integers as tonic's TimeSkew does."""
    events = _checked_copy(events)
    events["t"] = events["t"] * coefficient + offset
    return events


def align_time(events: np.ndarray) -> np.ndarray:
    """Shift times so the first event is at t = 0 (tonic's TimeAlignment)."""
    events = _checked_copy(events)
    if len(events):
        events["t"] -= events["t"][0]
    return events


def rotate(events: np.ndarray, sensor_size: tuple[int, ...], degrees: float) -> np.ndarray:
    """Rotate events counter-clockwise (x right, y down) about the sensor centre.

    Coordinates are rounded to the nearest pixel; events rotated off the sensor are dropped.
    180 degrees equals flipping both axes; 90 degrees on a square sensor maps (x, y) to
    (y, W - 1 - x).
    """
    events = checked_events(events)
    width, height = sensor_size[0], sensor_size[1]
    cx, cy = (width - 1) / 2, (height - 1) / 2
    angle = np.deg2rad(degrees)
    cos, sin = np.cos(angle), np.sin(angle)
    dx, dy = events["x"] - cx, events["y"] - cy
    x = np.rint(cx + cos * dx + sin * dy)
    y = np.rint(cy - sin * dx + cos * dy)
    inside = (x >= 0) & (x < width) & (y >= 0) & (y < height)
    out = events[inside]
    out["x"], out["y"] = x[inside], y[inside]
    return out
