"""Read sources (recordings) in background threads, a few items ahead of their consumer.

Reading and encoding recordings (HDF5 decompression, numpy, the numba encoders) mostly release
the GIL, and so does the model's forward pass: with the reading in threads, other cores decode
the next windows while one runs the model, in one process (no worker start-up, no copies
between processes).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

Item = TypeVar("Item")

_POLL_SECONDS = 0.1


def read_ahead(sources: Iterable[Iterable[Item]], threads: int, depth: int) -> Iterator[Item]:
    """The items of every source: each source's in order, sources interleaved.

    `threads` daemon threads take the sources one at a time, in order, and stay at most
    `depth` items ahead of the consumer. An exception of a source is raised here, after the
    items before it. Closing this generator (or an exception in the consumer) stops the threads.
    """
    if threads < 1 or depth < 1:
        raise ValueError(f"read_ahead needs threads >= 1 and depth >= 1, got {threads}, {depth}")
    buffer: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    next_source = _locked(iter(sources))

    def offer(item: object) -> bool:
        """Put an item, waiting while the buffer is full; False once the consumer stopped."""
        while not stop.is_set():
            try:
                buffer.put(item, timeout=_POLL_SECONDS)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            while (source := next_source()) is not None:
                for item in source:
                    if not offer(item):
                        return
        except BaseException as error:  # handed to the consumer, which raises it
            offer(_Failure(error))
        offer(_Done())

    for index in range(threads):
        threading.Thread(target=produce, name=f"eventsnn-read-{index}", daemon=True).start()
    running = threads
    try:
        while running:
            item = buffer.get()
            if isinstance(item, _Done):
                running -= 1
            elif isinstance(item, _Failure):
                raise item.error
            else:
                yield item
    finally:
        stop.set()


def _locked(sources: Iterator[Iterable[Item]]) -> Callable[[], Iterable[Item] | None]:
    """A thread-safe `next` over `sources` that returns None at the end."""
    lock = threading.Lock()

    def take() -> Iterable[Item] | None:
        with lock:
            return next(sources, None)

    return take


class _Done:
    """A producer thread ran out of sources."""


class _Failure:
    """An exception of a producer thread, on its way to the consumer."""

    def __init__(self, error: BaseException) -> None:
        self.error = error
