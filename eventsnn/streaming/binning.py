"""Incremental binning of arriving events into fixed time steps (frames of counts).

``StepBinner`` gives, for any chunking of a time-ordered recording, exactly the frames that
``eventsnn.encoding.to_frame(events, sensor_size, time_window=step_us, start_time=origin)`` gives
for the whole recording (tonic's ToFrame): step ``k`` counts the events with
``origin + k*step_us <= t < origin + (k+1)*step_us`` per polarity and pixel. A step is complete
once an event of a later step has arrived (or on ``flush`` at the end of a stream), so the steps
complete at any moment are exactly the windows tonic emits with ``include_incomplete=False``.

Only steps that hold events are kept (sparse), so a long silence costs nothing until its empty
steps are asked for. Events of a step already handed out (late) and events outside the sensor are
counted and left out, never silently.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass

import numba
import numpy as np
from numpy.typing import DTypeLike

from eventsnn.events import as_sensor_size

DENSE_LIMIT = 1 << 24
"""Largest (steps x pixels) buffer a chunk is binned into at once; wider chunks (a long silence
inside one chunk) go through the sparse path."""


@numba.njit(cache=True, nogil=True)
def _locate(x, y, t, p, origin, step_us, width, height, polarities, first_step):
    """Step and pixel of every event in one pass; -1 marks events outside or late.

    Returns (steps, pixels, n_outside, n_late, first present step, last present step).
    """
    n = len(t)
    steps = np.empty(n, np.int64)
    pixels = np.empty(n, np.int64)
    outside = late = 0
    lowest, highest = np.iinfo(np.int64).max, -1
    for i in range(n):
        xi, yi = np.int64(x[i]), np.int64(y[i])
        if xi < 0 or xi >= width or yi < 0 or yi >= height:
            steps[i] = -1
            outside += 1
            continue
        step = (t[i] - origin) // step_us
        if step < first_step:
            steps[i] = -1
            late += 1
            continue
        channel = np.int64(p[i]) if polarities > 1 else 0
        steps[i] = step
        pixels[i] = (channel * height + yi) * width + xi
        lowest = min(lowest, step)
        highest = max(highest, step)
    return steps, pixels, outside, late, lowest, highest


@numba.njit(cache=True, nogil=True)
def _accumulate_dense(steps, pixels, arrival, lowest, frames, counts, latest):
    """Count events into frames[step - lowest, pixel]; per step, the count and latest arrival."""
    for i in range(len(steps)):
        step = steps[i]
        if step < 0:
            continue
        k = step - lowest
        frames[k, pixels[i]] += 1
        counts[k] += 1
        latest[k] = max(latest[k], arrival[i])


@dataclass
class StepBatch:
    """Consecutive complete steps: ``frames[i]`` is step ``first_step + i``."""

    first_step: int
    frames: np.ndarray
    """(n, P, H, W) counts."""
    events: np.ndarray
    """(n,) int64 number of events binned in each step."""
    arrival_ns: np.ndarray
    """(n,) int64 arrival time of each step's last event (for an empty step: of the event that
    closed it), in the clock the caller passed to ``push``."""

    def __len__(self) -> int:
        return len(self.frames)


class StepBinner:
    """Bins events arriving in chunks into complete time steps; see the module docstring."""

    def __init__(
        self,
        sensor_size: Sequence[int],
        step_us: int,
        origin_us: int | None = None,
        dtype: DTypeLike = np.float32,
    ) -> None:
        if int(step_us) < 1:
            raise ValueError(f"step_us must be a positive number of microseconds, got {step_us}")
        self.width, self.height, self.polarities = as_sensor_size(sensor_size)
        self.step_us = int(step_us)
        self.origin_us = origin_us
        self.dtype = np.dtype(dtype)
        self.next_step = 0
        """The first step not handed out yet."""
        self.newest_step = -1
        """The step of the newest event (complete steps are those before it)."""
        self.flushed = False
        self.late_events = 0
        self.out_of_sensor_events = 0
        self._frames: dict[int, np.ndarray] = {}
        self._counts: dict[int, int] = {}
        self._last_arrival: dict[int, int] = {}
        self._closers: list[tuple[int, int]] = []  # (newest step after a push, its arrival)

    @property
    def frame_shape(self) -> tuple[int, int, int]:
        """(P, H, W) of one step."""
        return (self.polarities, self.height, self.width)

    @property
    def ready(self) -> int:
        """Number of complete steps waiting to be popped."""
        return max(self.newest_step + (1 if self.flushed else 0) - self.next_step, 0)

    def step_start_us(self, step: int) -> int:
        """Start time of a step in microseconds (the origin must be known)."""
        return int(self.origin_us) + step * self.step_us

    def push(self, events: np.ndarray, arrival_ns: int | np.ndarray = 0) -> None:
        """Add a chunk of time-ordered events (project dtype) and their arrival time(s) in ns."""
        if len(events) == 0:
            return
        if self.origin_us is None:
            self.origin_us = int(events["t"][0])
        arrival = np.broadcast_to(np.asarray(arrival_ns, dtype=np.int64), (len(events),))
        first_step = self.newest_step + 1 if self.flushed else self.next_step
        steps, pixels, outside, late, lowest, highest = _locate(
            events["x"], events["y"], events["t"], events["p"], self.origin_us, self.step_us,
            self.width, self.height, self.polarities, first_step,
        )  # fmt: skip
        self.out_of_sensor_events += outside
        self.late_events += late
        if highest < 0:
            return
        self.flushed = False
        size = self.polarities * self.height * self.width
        if (highest - lowest + 1) * size <= DENSE_LIMIT:
            self._add_dense(steps, pixels, arrival, lowest, highest)
        else:
            keep = steps >= 0
            self._add_sparse(steps[keep], pixels[keep], arrival[keep])
        if highest > self.newest_step:
            self.newest_step = highest
            self._closers.append((highest, int(arrival.max())))

    def _add_dense(
        self, steps: np.ndarray, pixels: np.ndarray, arrival: np.ndarray, lowest: int, highest: int
    ) -> None:
        """Bin a chunk that spans few steps into one (steps, pixels) buffer in a single pass."""
        n_steps = highest - lowest + 1
        frames = np.zeros((n_steps, self.polarities * self.height * self.width), self.dtype)
        counts = np.zeros(n_steps, np.int64)
        latest = np.full(n_steps, np.iinfo(np.int64).min, np.int64)
        _accumulate_dense(steps, pixels, arrival, lowest, frames, counts, latest)
        for k in np.flatnonzero(counts).tolist():
            self._merge(lowest + k, frames[k], int(counts[k]), int(latest[k]))

    def _add_sparse(self, steps: np.ndarray, pixels: np.ndarray, arrival: np.ndarray) -> None:
        """Bin a chunk that spans a long silence: one bincount over the steps present only."""
        order = np.argsort(steps, kind="stable")
        steps, pixels, arrival = steps[order], pixels[order], arrival[order]
        starts = np.concatenate(([0], np.flatnonzero(np.diff(steps)) + 1))
        present = steps[starts]
        latest = np.maximum.reduceat(arrival, starts)
        size = self.polarities * self.height * self.width
        local = np.repeat(np.arange(len(present)), np.diff(np.append(starts, len(steps))))
        counts = np.bincount(local * size + pixels, minlength=len(present) * size)
        counts = counts.reshape(len(present), size)
        for index, step in enumerate(present.tolist()):
            frame = counts[index].astype(self.dtype)
            self._merge(step, frame, int(counts[index].sum()), int(latest[index]))

    def _merge(self, step: int, frame: np.ndarray, count: int, latest: int) -> None:
        """Add one step's counts of a chunk to the pending steps."""
        frame = frame.reshape(self.frame_shape)
        if step in self._frames:
            self._frames[step] += frame
            self._counts[step] += count
            self._last_arrival[step] = max(self._last_arrival[step], latest)
        else:
            self._frames[step] = frame.copy()
            self._counts[step] = count
            self._last_arrival[step] = latest

    def flush(self) -> None:
        """Mark the open (newest) step complete: the stream has ended."""
        if self.newest_step >= self.next_step:
            self.flushed = True

    def pop(self, max_steps: int | None = None) -> StepBatch:
        """Hand out the oldest complete steps (at most ``max_steps``)."""
        n = self.ready if max_steps is None else min(self.ready, max_steps)
        first = self.next_step
        frames = np.zeros((n, *self.frame_shape), dtype=self.dtype)
        events = np.zeros(n, dtype=np.int64)
        arrival = np.zeros(n, dtype=np.int64)
        for i, step in enumerate(range(first, first + n)):
            if step in self._frames:
                frames[i] = self._frames.pop(step)
                events[i] = self._counts.pop(step)
                arrival[i] = self._last_arrival.pop(step)
            else:
                arrival[i] = self._closing_arrival(step)
        self._advance(first + n)
        return StepBatch(first, frames, events, arrival)

    def drop(self, n_steps: int) -> int:
        """Discard the oldest ``n_steps`` complete steps; returns how many events they held."""
        n = min(self.ready, n_steps)
        stop = self.next_step + n
        dropped = 0
        for step in [s for s in self._frames if s < stop]:
            del self._frames[step], self._last_arrival[step]
            dropped += self._counts.pop(step)
        self._advance(stop)
        return dropped

    def stale_steps(self, arrival_limit_ns: int) -> int:
        """How many of the oldest ready steps arrived before ``arrival_limit_ns`` (a prefix)."""
        stale = 0
        for step in range(self.next_step, self.next_step + self.ready):
            arrival = self._last_arrival.get(step)
            if arrival is None:
                arrival = self._closing_arrival(step)
            if arrival >= arrival_limit_ns:
                break
            stale += 1
        return stale

    def event_steps(self) -> list[int]:
        """The pending steps that hold events, in order."""
        return sorted(self._frames)

    def skip_to(self, step: int) -> None:
        """Jump over empty steps up to ``step`` (used after a reset on a long gap)."""
        if any(s < step for s in self._frames):
            raise ValueError(f"cannot skip to step {step}: earlier steps hold events")
        self._advance(max(self.next_step, min(step, self.newest_step)))

    def _closing_arrival(self, step: int) -> int:
        """Arrival of the chunk whose newest event first went past ``step``."""
        index = bisect.bisect_right(self._closers, (step, np.iinfo(np.int64).max))
        return self._closers[min(index, len(self._closers) - 1)][1]

    def _advance(self, step: int) -> None:
        self.next_step = step
        del self._closers[: bisect.bisect_right(self._closers, (step, np.iinfo(np.int64).max))]
