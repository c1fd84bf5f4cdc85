"""Slicing a recording into (possibly overlapping) windows while streaming it from disk.

Windows are by time (``duration_us``) or by event count (``n_events``), with an overlap in the
same unit; window k starts k strides after the first event (time) or at event k * stride
(count). Every complete window is kept (a time window [start, start + length) is complete when
the recording has an event at or after its last microsecond; a count window when it holds
`n_events`) except time windows without events; then the first incomplete window, if it holds
events no earlier window held. So every event is in a window. The file is read with
`eventsnn.events.iter_packets` in blocks of about a million events (or one window, if longer)
and windows are views into the block: memory is set by the block, whatever the recording's
length, and the per-window work is a few index look-ups.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from eventsnn.data.errors import ConfigError
from eventsnn.events import EventsError, copy_events, iter_packets, join_events, time_index
from eventsnn.events.formats.base import CHUNK_EVENTS

INT64_MAX = int(np.iinfo(np.int64).max)


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
    block_events: int = CHUNK_EVENTS,
    part: int = 0,
    parts: int = 1,
) -> Iterator[Window]:
    """Stream the windows of the recording at `path` (see the module docstring).

    With `sensor_size`, a file that declares another size or holds events outside it raises
    `EventsError` naming the file (from `iter_packets`). With `parts` > 1, only the windows of
    part `part` (`window_range`); the parts' windows together are the whole recording's.
    """
    start = window_range(path, config, part, parts)
    if start is None:
        return
    first, stop, t0, base, t_start = start
    cutter = _Cutter(config, t0, first, base)
    block = max(block_events, 1 if config.by_time else config.length)
    packets = iter_packets(path, sensor_size=sensor_size, t_start=t_start)
    for window in _cut_all(cutter, _blocks(packets, block, base)):
        if stop is not None and window.index >= stop:
            return
        yield window


PartStart = tuple[int, int | None, int | None, int, int | None]
"""(first window, window to stop before or None, t0, index of the first event, t_start)."""


def window_range(
    path: str | os.PathLike, config: WindowConfig, part: int, parts: int
) -> PartStart | None:
    """Where part `part` of `parts` of a recording starts: None if it holds no window.

    Time windows without overlap of a file that can seek by time (.h5, .npy) are split into
    `parts` runs of about equal numbers of windows, each read from its first window's start
    (the windows of a part depend only on events from there on). Other recordings are not
    split: part 0 is the whole recording and the other parts are empty.
    """
    if parts == 1:
        return 0, None, None, 0, None
    index = time_index(path) if config.by_time and config.overlap == 0 else None
    if index is None:
        return (0, None, None, 0, None) if part == 0 else None
    n_windows = (index.last_t - index.first_t) // config.stride + 1
    first = -(-part * n_windows // parts)  # rounded up: part 0 always holds window 0,
    stop = None if part == parts - 1 else -(-(part + 1) * n_windows // parts)  # empty ones last
    if stop is not None and stop <= first:
        return None
    t_start = index.first_t + first * config.stride
    return first, stop, index.first_t, index.events_before(t_start) if part else 0, t_start


def _blocks(packets: Iterator[np.ndarray], size: int, base: int) -> Iterator[np.ndarray]:
    """Blocks of `size` events whose bounds fall on multiples of `size` in the recording (the
    first block starts at event `base`); the last may hold fewer.

    The .h5 and .npy readers' packets have such bounds for a million events, so a part of a
    recording starting anywhere joins no packets (a join copies: ~16 ms a million events).
    """
    pending: list[np.ndarray] = []
    count, target = 0, (-base) % size or size
    for packet in packets:
        while len(packet):
            take = min(len(packet), target - count)
            pending.append(packet[:take])
            count, packet = count + take, packet[take:]
            if count == target:
                yield join_events(pending)
                pending, count, target = [], 0, size
    if count:
        yield join_events(pending)


def _cut_all(cutter: _Cutter, chunks: Iterator[np.ndarray]) -> Iterator[Window]:
    for chunk in chunks:
        if len(chunk):
            yield from cutter.feed(chunk)
    yield from cutter.close()


class _Cutter:
    """Cuts the blocks of one recording into windows, keeping the events of unfinished ones.

    Windows are views into a block; a window that straddles blocks is copied once: the blocks
    it spans are kept as they come and joined when an event at or past its end arrives (or the
    recording ends), so a window longer than a block costs its events, not a re-copy a block.
    """

    def __init__(
        self, config: WindowConfig, t0: int | None = None, k: int = 0, base: int = 0
    ) -> None:
        """Cut from window k on, the first block starting at event `base` (a part)."""
        self.config = config
        self.pending: list[np.ndarray] = []  # events from the start of window k on, in pieces
        self.count = 0  # events pending
        self.base = self.covered = base  # index of pending[0][0]; events windowed
        self.k = k  # next window
        self.t0 = t0

    def feed(self, block: np.ndarray) -> Iterator[Window]:
        """The windows completed by the next `block` of events."""
        self.t0 = int(block["t"][0]) if self.t0 is None else self.t0
        _check_room(int(block["t"][-1]), self.config)
        if self.pending:
            if not self._completes(block):  # window k goes on after the block: join it later
                self.pending.append(block)
                self.count += len(block)
                return
            head = self._head(block)
            yield from self._cut(join_events([*self.pending, block[:head]]))
            # what is left starts in the block: go on there, uncopied; else the block ended
            # inside the windows that started before it (head is all of it, none is left)
            block = block[head - self.count :] if self.count <= head else block[:0]
        if len(block):
            yield from self._cut(block)
        self.pending = [copy_events(piece) for piece in self.pending]  # frees the block

    def _completes(self, block: np.ndarray) -> bool:
        """Whether the block completes window k, the first of the pending events'."""
        end = _start(self.config, self.k, self.t0) + self.config.length
        if self.config.by_time:
            return int(block["t"][-1]) >= end
        return self.base + self.count + len(block) >= end

    def _head(self, block: np.ndarray) -> int:
        """How many of the block's events complete the windows that start in the pending ones."""
        config, stride = self.config, self.config.stride
        if config.by_time:
            latest = int(self.pending[-1]["t"][-1])
            last = (latest - self.t0) // stride  # last window starting in the pending events
            end = self.t0 + last * stride + config.length  # all its events, then one more
            return min(len(block), int(np.searchsorted(block["t"], end, side="left")) + 1)
        last = (self.base + self.count - 1) // stride
        return min(len(block), max(0, last * stride + config.length - self.base - self.count))

    def _cut(self, buffer: np.ndarray, final: bool = False) -> Iterator[Window]:
        """Yield the windows complete in `buffer` (events from window k on); keep the rest.

        `final`: the buffer ends the recording (no event with the last one's time can follow).
        """
        config, t0, base = self.config, self.t0, self.base
        t = np.ascontiguousarray(buffer["t"])  # searchsorted would copy the strided field
        indices, lows, highs, self.k = _complete_windows(config, self.k, t0, t, base, final)
        for index, lo, hi in zip(indices.tolist(), lows.tolist(), highs.tolist(), strict=True):
            self.covered = base + hi
            yield Window(index, *_range(config, index, t0, t[lo:hi]), base + lo, buffer[lo:hi])
        drop = _start_in(config, self.k, t0, t, base)
        self.pending = [buffer[drop:]] if drop < len(buffer) else []
        self.count, self.base = len(buffer) - drop, base + drop

    def close(self) -> Iterator[Window]:
        """The recording ended: the last complete windows, then the first incomplete window if
        it holds events no earlier window held."""
        if self.pending:
            yield from self._cut(join_events(self.pending), final=True)
        if self.t0 is None or self.base + self.count <= self.covered:
            return
        k, tail = self.k, self.pending[0]  # window k's events (the earlier ones were dropped)
        yield Window(k, *_range(self.config, k, self.t0, tail["t"]), self.base, tail)


Windows = tuple[np.ndarray, np.ndarray, np.ndarray, int]
"""(window indices, first event, end event in the buffer) of the windows found, next window."""


def _complete_windows(
    config: WindowConfig, k: int, t0: int, t: np.ndarray, base: int, final: bool
) -> Windows:
    """The non-empty windows from window k on that the buffer (times `t`) holds whole.

    `final`: the buffer ends the recording.
    """
    if config.by_time:
        return _complete_time_windows(config, k, t0, t, final)
    last = (base + len(t) - config.length) // config.stride  # last window with all its events
    indices = np.arange(k, last + 1, dtype=np.int64)
    lows = indices * config.stride - base
    return indices, lows, lows + config.length, max(k, last + 1)


def _complete_time_windows(
    config: WindowConfig, k: int, t0: int, t: np.ndarray, final: bool
) -> Windows:
    """Time windows are complete when an event is at or after their last microsecond; all
    their events are known once an event follows them, or when the recording ends."""
    length, stride = config.length, config.stride
    last = (int(t[-1]) - length + int(final) - t0) // stride
    if last + 1 - k <= len(t):  # no long gap: try every window
        indices = np.arange(k, last + 1, dtype=np.int64)
    else:  # only the windows holding events, not the (many) empty ones of the gap
        indices = _windows_with_events(t - t0, length, stride, k, last)
    begins = t0 + indices * stride
    lows = np.searchsorted(t, begins, side="left")
    highs = np.searchsorted(t, begins + length, side="left")
    keep = highs > lows
    return indices[keep], lows[keep], highs[keep], max(k, last + 1)


def _windows_with_events(
    times: np.ndarray, length: int, stride: int, k: int, last: int
) -> np.ndarray:
    """The windows k..last holding at least one of the (sorted, relative) times, in order, in
    time and memory proportional to the windows found: an event at time r is in windows
    ceil((r - length + 1) / stride) .. r // stride, and both ends only grow, so each event adds
    the windows after those of the event before it."""
    first = -((length - 1 - times) // stride)
    latest = times // stride
    before = np.maximum(np.r_[k - 1, latest[:-1]], k - 1)
    starts = np.maximum(first, before + 1)
    counts = np.clip(np.minimum(latest, last) - starts + 1, 0, None)
    offsets = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
    return np.repeat(starts, counts) + offsets


def _start(config: WindowConfig, k: int, t0: int) -> int:
    """Window k's first microsecond (time) or first event index (count)."""
    return (t0 if config.by_time else 0) + k * config.stride


def _start_in(config: WindowConfig, k: int, t0: int, t: np.ndarray, base: int) -> int:
    """Index in the buffer (times `t`) of window k's first event."""
    if config.by_time:
        return int(np.searchsorted(t, _start(config, k, t0), side="left"))
    return min(len(t), _start(config, k, t0) - base)


def _check_room(t: int, config: WindowConfig) -> None:
    """EventsError if a window holding time `t` may end past the largest int64 time (its
    [t_start, t_stop) could not be stored: the run's arithmetic and columns are int64)."""
    room = config.length if config.by_time else 1
    if t > INT64_MAX - room:
        raise EventsError(
            f"an event at t={t} us is within {room} us of the largest time int64 holds "
            f"({INT64_MAX}): the end of its window cannot be stored"
        )


def _range(config: WindowConfig, k: int, t0: int, t: np.ndarray) -> tuple[int, int]:
    """[t_start, t_stop) of a window: nominal for time windows, its events' for count windows."""
    if config.by_time:
        start = _start(config, k, t0)
        return start, start + config.length
    return int(t[0]), int(t[-1]) + 1
