"""Slicing a recording into (possibly overlapping) windows while streaming it from disk.

Windows are by time (``duration_us``) or by event count (``n_events``), with an overlap in the
same unit. The file is read through `eventsnn.events.iter_chunks` in chunks of one stride, so at
most one window plus one chunk is in memory, whatever the recording's length. Window k starts
k strides after the first event (time) or at event k * stride (count); the last windows may be
incomplete, and one is kept only when it holds events no earlier window held, so every event is
in at least one window. Time windows without events are skipped.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from eventsnn.data.errors import ConfigError
from eventsnn.events import iter_chunks


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
    unit = {"duration_us": config.stride} if config.by_time else {"n_events": config.stride}
    chunks = iter_chunks(path, sensor_size=sensor_size, **unit)
    span = -(-config.length // config.stride)  # chunks a window touches
    pending: deque[tuple[int, np.ndarray]] = deque()  # (first event index, chunk)
    offset, k, covered, t0 = 0, 0, 0, None
    for chunk in chunks:
        if t0 is None and len(chunk):
            t0 = int(chunk["t"][0])
        pending.append((offset, chunk))
        offset += len(chunk)
        if len(pending) == span:
            window = _window(config, k, t0, pending)
            covered = window.first_event + len(window.events)
            if len(window.events):
                yield window
            pending.popleft()
            k += 1
    while pending:
        window = _window(config, k, t0, pending)
        if window.first_event + len(window.events) > covered:
            covered = window.first_event + len(window.events)
            yield window
        pending.popleft()
        k += 1


def _window(
    config: WindowConfig, k: int, t0: int | None, pending: deque[tuple[int, np.ndarray]]
) -> Window:
    """Window k from the chunks it starts at, cut to the window's length."""
    first = pending[0][0]
    parts = [chunk for _, chunk in pending]
    events = parts[0] if len(parts) == 1 else np.concatenate(parts)
    if config.by_time:
        t_start = (t0 or 0) + k * config.stride
        t_stop = t_start + config.length
        events = events[: np.searchsorted(events["t"], t_stop, side="left")]
    else:
        events = events[: config.length]
        t_start = int(events["t"][0]) if len(events) else 0
        t_stop = int(events["t"][-1]) + 1 if len(events) else 0
    return Window(k, int(t_start), int(t_stop), int(first), events)
