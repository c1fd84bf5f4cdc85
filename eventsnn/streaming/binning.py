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

import numpy as np
from numpy.typing import DTypeLike

from eventsnn.events import as_sensor_size


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
        x, y, p = events["x"].astype(np.int64), events["y"].astype(np.int64), events["p"]
        inside = (x >= 0) & (x < self.width) & (y >= 0) & (y < self.height)
        steps = (events["t"] - self.origin_us) // self.step_us
        keep = inside & (steps >= self.next_step)
        if self.flushed:
            keep &= steps > self.newest_step
        self.out_of_sensor_events += int(np.count_nonzero(~inside))
        self.late_events += int(np.count_nonzero(inside & ~keep))
        if not keep.all():
            steps, x, y, p, arrival = steps[keep], x[keep], y[keep], p[keep], arrival[keep]
            if steps.size == 0:
                return
        self.flushed = False
        channel = p.astype(np.int64) if self.polarities > 1 else 0
        pixel = (channel * self.height + y) * self.width + x
        self._accumulate(steps, pixel, arrival)
        newest = int(steps.max())
        if newest > self.newest_step:
            self.newest_step = newest
            self._closers.append((newest, int(arrival.max())))

    def _accumulate(self, steps: np.ndarray, pixel: np.ndarray, arrival: np.ndarray) -> None:
        """Add counts per (step, pixel) for the steps present in the chunk."""
        if np.any(np.diff(steps) < 0):
            order = np.argsort(steps, kind="stable")
            steps, pixel, arrival = steps[order], pixel[order], arrival[order]
        starts = np.concatenate(([0], np.flatnonzero(np.diff(steps)) + 1))
        present = steps[starts]
        latest = np.maximum.reduceat(arrival, starts)
        size = self.polarities * self.height * self.width
        local = np.repeat(np.arange(len(present)), np.diff(np.append(starts, len(steps))))
        counts = np.bincount(local * size + pixel, minlength=len(present) * size)
        counts = counts.reshape(len(present), *self.frame_shape)
        for index, step in enumerate(present.tolist()):
            if step in self._frames:
                self._frames[step] += counts[index]
                self._counts[step] += int(counts[index].sum())
                self._last_arrival[step] = max(self._last_arrival[step], int(latest[index]))
            else:
                self._frames[step] = counts[index].astype(self.dtype)
                self._counts[step] = int(counts[index].sum())
                self._last_arrival[step] = int(latest[index])

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
