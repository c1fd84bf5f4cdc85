"""Slicing a recording into (possibly overlapping) windows while streaming it from disk.

Windows are by time (``duration_us``) or by event count (``n_events``), with an overlap in the
same unit; window k starts k strides after the first event (time) or at event k * stride
(count). Every complete window is kept (a time window [start, start + length) is complete when
the recording has an event at or after its last microsecond; a count window when it holds
`n_events`) except time windows without events; then the first incomplete window, if it holds
events no earlier window held. So every event is in a window. The file is read with
`eventsnn.events.iter_chunks` in chunks of one window length: at most about two windows of
events are in memory, whatever the recording's length.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from eventsnn.data.errors import ConfigError
from eventsnn.events import empty_events, iter_chunks


@dataclass(frozen=True)
class WindowConfig:
    """How recordings are cut: windows of `duration_us` microseconds or of `n_events` events.

    `overlap` is in the window's unit and must be smaller than the window.
    """

    duration_us: int | None = None
    n_events: int | None = None
    overlap: int = 0

    def __post_init__(self) -> None:
        if (self.duration_us is None) == (self.n_events is None):
            raise ConfigError(
                "window", f"give exactly one of window_us and window_events, got {self}"
            )
        if self.length < 1:
            raise ConfigError("window", f"window length must be >= 1, got {self.length}")
        if not 0 <= self.overlap < self.length:
            raise ConfigError(
                "overlap",
                f"overlap must be >= 0 and < the window ({self.length}), got {self.overlap}",
            )

    @property
    def length(self) -> int:
        """Window length in its unit (microseconds or events)."""
        return int(self.duration_us if self.duration_us is not None else self.n_events)

    @property
    def stride(self) -> int:
        """Distance between window starts, in the window's unit."""
        return self.length - self.overlap

    @property
    def by_time(self) -> bool:
        """Whether windows are cut by time (else by event count)."""
        return self.duration_us is not None

    def as_dict(self) -> dict[str, int | None]:
        """Plain parameters, for the results file's metadata."""
        return {
            "window_us": self.duration_us,
            "window_events": self.n_events,
            "overlap": self.overlap,
        }


@dataclass(frozen=True)
class Window:
    """One window of a recording: its position, time range [t_start, t_stop) and events.

    `first_event` is the index of the window's first event in the recording.
    """

    index: int
    t_start: int
    t_stop: int
    first_event: int
    events: np.ndarray


def iter_windows(
    path: str | os.PathLike,
    config: WindowConfig,
    sensor_size: Sequence[int] | None = None,
) -> Iterator[Window]:
    """Stream the windows of the recording at `path` (see the module docstring).

    With `sensor_size`, a file that declares another size or holds events outside it raises
    `EventsError` naming the file (from `iter_chunks`).
    """
    unit = {"duration_us": config.length} if config.by_time else {"n_events": config.length}
    buffer = empty_events()  # events from the start of window k on
    base = k = covered = 0  # index of buffer[0] in the recording; next window; events windowed
    t0 = None
    for chunk in iter_chunks(path, sensor_size=sensor_size, **unit):
        if len(chunk) == 0:
            continue
        t0 = int(chunk["t"][0]) if t0 is None else t0
        buffer = np.concatenate((buffer, chunk)) if len(buffer) else chunk
        while len(buffer):
            k = _first_window_reaching(config, k, t0, int(buffer["t"][0]))
            window = _complete_window(config, k, t0, buffer, base)
            if window is None:
                break
            if len(window.events):
                covered = window.first_event + len(window.events)
                yield window
            k += 1
            drop = _start_in(config, k, t0, buffer, base)
            buffer, base = buffer[drop:], base + drop
    if t0 is not None and base + len(buffer) > covered:
        yield Window(k, *_range(config, k, t0, buffer), base, buffer)


def _start(config: WindowConfig, k: int, t0: int) -> int:
    """Window k's first microsecond (time) or first event index (count)."""
    return (t0 if config.by_time else 0) + k * config.stride


def _first_window_reaching(config: WindowConfig, k: int, t0: int, t_first: int) -> int:
    """Skip time windows that end before `t_first` (they are empty)."""
    if not config.by_time or _start(config, k, t0) + config.length > t_first:
        return k
    return max(k, -(-(t_first - config.length + 1 - t0) // config.stride))


def _complete_window(
    config: WindowConfig, k: int, t0: int, buffer: np.ndarray, base: int
) -> Window | None:
    """Window k if the buffer (starting at the window) holds all of it, else None."""
    start = _start(config, k, t0)
    if config.by_time:
        if buffer["t"][-1] < start + config.length - 1:
            return None
        events = buffer[: np.searchsorted(buffer["t"], start + config.length, side="left")]
    else:
        if len(buffer) < config.length:
            return None
        events = buffer[: config.length]
    return Window(k, *_range(config, k, t0, events), base, events)


def _start_in(config: WindowConfig, k: int, t0: int, buffer: np.ndarray, base: int) -> int:
    """Index in the buffer of window k's first event."""
    if config.by_time:
        return int(np.searchsorted(buffer["t"], _start(config, k, t0), side="left"))
    return min(len(buffer), _start(config, k, t0) - base)


def _range(config: WindowConfig, k: int, t0: int, events: np.ndarray) -> tuple[int, int]:
    """[t_start, t_stop) of a window: nominal for time windows, its events' for count windows."""
    if config.by_time:
        start = _start(config, k, t0)
        return start, start + config.length
    return int(events["t"][0]), int(events["t"][-1]) + 1
