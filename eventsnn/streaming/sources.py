"""What every event source shares: the error type, the counters, and sources over Python iterables.

A source is an iterable of ``Packet``s: event arrays (the project's dtype, time-ordered) with their
arrival time on the wall clock (``time.time_ns()``; a live UDP source uses the kernel's receive
time of each datagram). A live source may yield an empty packet when nothing arrived for a while,
so that the consumer can update its status and notice a stop request; a finite source ends when
its data ends.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from typing import NamedTuple

import numpy as np

from eventsnn.events import EventsError, validate


class Packet(NamedTuple):
    """Events that arrived together, with their arrival time in ns (one value or one per event)."""

    events: np.ndarray
    arrival_ns: int | np.ndarray


class StreamError(EventsError):
    """A source or stream that cannot be used: a port in use, a bad address, a sensor mismatch."""


@dataclass
class SourceStats:
    """Counters a source keeps, reported in the live status and the final summary."""

    packets: int = 0
    events: int = 0
    malformed_packets: int = 0
    kernel_dropped_packets: int = 0
    socket_buffer_bytes: int = 0

    def as_dict(self) -> dict[str, int]:
        """The counters as a plain dict (JSON-ready)."""
        return asdict(self)


class IteratorSource:
    """Events from any Python iterable of event arrays, for embedding in other programs.

    Each array is validated (dtype, time order) as it arrives; an array that fails is an
    ``EventsError`` naming the chunk index, since a programming error should not pass silently.
    """

    def __init__(self, chunks: Iterable[np.ndarray]) -> None:
        self.chunks = chunks
        self.stats = SourceStats()

    def __iter__(self) -> Iterator[Packet]:
        for index, events in enumerate(self.chunks):
            try:
                validate(events)
            except EventsError as error:
                raise EventsError(f"chunk {index} of the iterator: {error}") from None
            self.stats.packets += 1
            self.stats.events += len(events)
            yield Packet(events, time.time_ns())

    def close(self) -> None:
        """Nothing to release; present so that every source can be closed the same way."""
