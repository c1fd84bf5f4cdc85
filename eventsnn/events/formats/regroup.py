"""Regroup decoded packets (whatever sizes a decoder yields) into exact windows.

Both functions keep at most one window plus one packet in memory.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np

from eventsnn.events.core import empty_events, join_events


def by_count(packets: Iterable[np.ndarray], n_events: int) -> Iterator[np.ndarray]:
    """Windows of exactly `n_events` events; the last one holds the remainder (if any)."""
    pending: list[np.ndarray] = []
    count = 0
    for packet in packets:
        pending.append(packet)
        count += len(packet)
        if count < n_events:
            continue
        joined = join_events(pending)
        whole = (count // n_events) * n_events
        for start in range(0, whole, n_events):
            yield joined[start : start + n_events]
        rest = joined[whole:]
        pending, count = ([rest], len(rest)) if len(rest) else ([], 0)
    if count:
        yield join_events(pending)


def by_duration(packets: Iterable[np.ndarray], duration_us: int) -> Iterator[np.ndarray]:
    """Windows [t0 + k * duration_us, t0 + (k + 1) * duration_us) with t0 the first timestamp.

    Every window up to the last event is yielded, empty ones included, so window k always
    starts at t0 + k * duration_us. The last window is yielded even when shorter.
    """
    pending: list[np.ndarray] = []
    window_end: int | None = None
    for packet in packets:
        if len(packet) == 0:
            continue
        t = np.ascontiguousarray(packet["t"])  # searchsorted copies a strided field each call
        if window_end is None:
            window_end = int(t[0]) + duration_us
        start = 0
        while True:
            split = start + int(np.searchsorted(t[start:], window_end, side="left"))
            if split == len(t):
                pending.append(packet[start:])
                break
            pending.append(packet[start:split])
            yield join_events(pending)
            pending = []
            start = split
            window_end += duration_us
            while t[start] >= window_end:
                yield empty_events()
                window_end += duration_us
    if pending:
        yield join_events(pending)
