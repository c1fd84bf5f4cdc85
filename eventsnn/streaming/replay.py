"""File replay: a recording streamed in windows of event time, in real time or as fast as possible.

Any format that ``eventsnn.events.iter_chunks`` reads is replayed window by window (memory: one
window). In real time (``speed`` > 0) the window [t0 + k*w, t0 + (k+1)*w) is released when the
wall clock reaches ``start + (k+1)*w / speed``, the moment a live sensor would have delivered its
last event; with ``speed=None`` windows are released as fast as the consumer takes them.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator, Sequence

import numpy as np

from eventsnn.events import iter_chunks
from eventsnn.streaming.sources import Packet, SourceStats


def paced(
    windows: Iterable[np.ndarray], window_us: int, speed: float | None
) -> Iterator[np.ndarray]:
    """Release consecutive windows of ``window_us`` at ``speed`` x real time (None: at once).

    Window k is released at ``start + (k + 1) * window_us / speed`` on the monotonic clock.
    """
    if speed is not None and speed <= 0:
        raise ValueError(f"speed must be positive (or None for as fast as possible), got {speed}")
    start = time.monotonic()
    for index, window in enumerate(windows):
        if speed is not None:
            due = start + (index + 1) * window_us / (1e6 * speed)
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        yield window


class ReplaySource:
    """Replays an event file (any format ``eventsnn.events`` reads) as a stream of packets."""

    def __init__(
        self,
        path: str | os.PathLike,
        speed: float | None = 1.0,
        packet_us: int = 1000,
        sensor_size: Sequence[int] | None = None,
        format: str | None = None,
    ) -> None:
        self.path = path
        self.speed = speed
        self.packet_us = packet_us
        self.sensor_size = sensor_size
        self.format = format
        self.stats = SourceStats()

    def __iter__(self) -> Iterator[Packet]:
        windows = iter_chunks(
            self.path, duration_us=self.packet_us, format=self.format, sensor_size=self.sensor_size
        )
        for events in paced(windows, self.packet_us, self.speed):
            self.stats.packets += 1
            self.stats.events += len(events)
            yield Packet(events, time.time_ns())

    def close(self) -> None:
        """Nothing to release (the file is closed when iteration ends)."""
