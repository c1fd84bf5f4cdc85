"""An event-camera simulator in the style of ESIM / v2e: intensity frames -> DVS events.

Each pixel keeps a reference log intensity. Between two frames its log intensity is taken to change
linearly in time; every time it passes ``reference + threshold_on`` an ON event fires and the
reference moves up by ``threshold_on`` (OFF: down by ``threshold_off``), so one frame interval can
give several events per pixel, at linearly interpolated timestamps. A refractory period models the
pixel's reset being held after an event: crossings inside it move the reference but emit nothing.
Shot noise adds independent Poisson events of random polarity.
"""

from __future__ import annotations

from collections.abc import Sequence

import numba
import numpy as np

from eventsnn.events.core import EVENT_DTYPE, EventsError

_TOL = 1e-9
"""A level counts as passed only beyond this margin (log units), so the float drift of the
reference does not fire spurious events when a pixel returns exactly to an earlier intensity."""


def simulate(
    frames: np.ndarray,
    timestamps: Sequence[int] | np.ndarray,
    *,
    threshold: float | tuple[float, float] = 0.2,
    refractory_us: int = 0,
    noise_rate_hz: float = 0.0,
    seed: int | None = None,
    eps: float = 1e-3,
) -> np.ndarray:
    """Turn intensity frames ``(N, H, W)`` taken at ``timestamps`` (µs) into sorted DVS events.

    ``threshold`` is the log-intensity contrast of one event, a float or an ``(on, off)`` pair;
    intensities are mapped through ``log(frame + eps)``. ``refractory_us`` drops a pixel's events
    closer than that to its previous emitted event. ``noise_rate_hz`` adds shot noise per pixel,
    drawn from ``seed``; without noise the output does not depend on the seed.
    """
    log_frames, times = _checked_inputs(frames, timestamps, eps)
    c_on, c_off = _checked_thresholds(threshold)
    if refractory_us < 0:
        raise EventsError(f"refractory_us must be >= 0, got {refractory_us}")
    if noise_rate_hz < 0:
        raise EventsError(f"noise_rate_hz must be >= 0, got {noise_rate_hz}")
    n_frames, height, width = log_frames.shape
    per_pixel = np.ascontiguousarray(log_frames.reshape(n_frames, -1).T)
    steps = np.abs(np.diff(per_pixel, axis=1))
    capacity = int(np.floor(steps / min(c_on, c_off)).sum() + np.count_nonzero(steps))
    pixel, t, p = _threshold_crossings(
        per_pixel, times.astype(np.float64), c_on, c_off, int(refractory_us), capacity
    )
    if noise_rate_hz > 0 and n_frames > 1:
        noise_pixel, noise_t, noise_p = _shot_noise(
            width * height, int(times[0]), int(times[-1]), noise_rate_hz, seed
        )
        pixel = np.concatenate([pixel, noise_pixel])
        t = np.concatenate([t, noise_t])
        p = np.concatenate([p, noise_p])
    order = np.argsort(t, kind="stable")
    events = np.empty(len(order), dtype=EVENT_DTYPE)
    events["x"] = pixel[order] % width
    events["y"] = pixel[order] // width
    events["t"] = t[order]
    events["p"] = p[order]
    return events


def _checked_inputs(
    frames: np.ndarray, timestamps: Sequence[int] | np.ndarray, eps: float
) -> tuple[np.ndarray, np.ndarray]:
    """Validate frames and timestamps; return log intensities (float64) and int64 times."""
    frames = np.asarray(frames)
    if frames.ndim != 3 or frames.shape[0] < 1:
        raise EventsError(f"frames must have shape (N, H, W) with N >= 1, got {frames.shape}")
    if frames.shape[1] > 32767 or frames.shape[2] > 32767:
        raise EventsError(f"frames of shape {frames.shape} exceed the int16 event coordinates")
    if not np.issubdtype(frames.dtype, np.number) or not np.all(np.isfinite(frames)):
        raise EventsError("frames must hold finite real intensities")
    if eps < 0:
        raise EventsError(f"eps must be >= 0, got {eps}")
    if np.any(frames + eps <= 0):
        raise EventsError(f"frames + eps must be > 0 to take the log; min frame is {frames.min()}")
    times = np.asarray(timestamps)
    if times.shape != (frames.shape[0],):
        raise EventsError(
            f"timestamps must have shape ({frames.shape[0]},) to match frames, got {times.shape}"
        )
    if not np.issubdtype(times.dtype, np.integer):
        if not np.all(np.isfinite(times)) or np.any(times != np.round(times)):
            raise EventsError("timestamps must be whole microseconds")
        times = times.astype(np.int64)
    bad = np.flatnonzero(np.diff(times) <= 0)
    if bad.size:
        i = int(bad[0]) + 1
        raise EventsError(
            f"timestamps must increase strictly: timestamps[{i}]={int(times[i])} "
            f"<= timestamps[{i - 1}]={int(times[i - 1])}"
        )
    return np.log(frames.astype(np.float64) + eps), times.astype(np.int64)


def _checked_thresholds(threshold: float | tuple[float, float]) -> tuple[float, float]:
    """Return ``(on, off)`` contrast thresholds, both positive."""
    pair = (threshold, threshold) if np.isscalar(threshold) else tuple(threshold)
    if len(pair) != 2 or not all(np.isfinite(c) and c > 0 for c in pair):
        raise EventsError(f"threshold must be a positive float or (on, off) pair, got {threshold}")
    return float(pair[0]), float(pair[1])


@numba.njit(cache=True)
def _threshold_crossings(log_i, times, c_on, c_off, refractory_us, capacity):
    """Events of every pixel (rows of ``log_i``) at its reference-level crossings, in time order."""
    n_pixels, n_frames = log_i.shape
    pixel = np.empty(capacity, np.int64)
    t_out = np.empty(capacity, np.int64)
    p_out = np.empty(capacity, np.bool_)
    n = 0
    for i in range(n_pixels):
        ref = log_i[i, 0]
        last_t = -(2**62)
        for k in range(n_frames - 1):
            l0 = log_i[i, k]
            l1 = log_i[i, k + 1]
            if l1 == l0:
                continue
            up = l1 > l0
            step = c_on if up else -c_off
            while (l1 > ref + step + _TOL) if up else (l1 < ref + step - _TOL):
                ref += step
                frac = (ref - l0) / (l1 - l0)
                t = np.int64(np.floor(times[k] + frac * (times[k + 1] - times[k]) + 0.5))
                if t - last_t >= refractory_us:
                    pixel[n] = i
                    t_out[n] = t
                    p_out[n] = up
                    n += 1
                    last_t = t
    return pixel[:n], t_out[:n], p_out[:n]


def _shot_noise(
    n_pixels: int, t_start: int, t_stop: int, rate_hz: float, seed: int | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Poisson noise events: ``rate_hz`` per pixel between ``t_start`` and ``t_stop`` (µs)."""
    rng = np.random.default_rng(seed)
    count = rng.poisson(rate_hz * n_pixels * (t_stop - t_start) * 1e-6)
    pixel = rng.integers(0, n_pixels, count)
    t = rng.integers(t_start, t_stop + 1, count)
    p = rng.random(count) < 0.5
    return pixel, t, p
