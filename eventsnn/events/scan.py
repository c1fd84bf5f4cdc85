"""One fused numba pass over the structured event array: is every event sorted and on the sensor?

Reading the fields of a structured array one by one costs a strided copy per field; these kernels
read each record once (0.85 ms a million events against 5.4 ms for `validate`'s numpy checks).
They take contiguous 1-D `EVENT_DTYPE` arrays and return the index of the first unsorted or
out-of-sensor event, `ALL_VALID` when there is none; the caller raises `validate`'s error.
The encoding kernels test events with `is_bad` too. Numba caches a kernel per file: after editing
`is_bad`, clear the encoding kernels' cache (`__pycache__/_kernels*.nb*`) as well.
"""

from __future__ import annotations

import numba
import numpy as np

ALL_VALID = -1
"""Returned by checking kernels when every event is sorted and inside the sensor."""

jit = numba.njit(cache=True, nogil=True)
"""How the event kernels compile: cached on disk, without the GIL (readers run side by side)."""


@jit
def is_bad(x, y, t, previous_t, width, height):
    """Whether an event is earlier than the one before or outside [0, width) x [0, height)."""
    # one unsigned comparison per coordinate also catches negatives; | avoids branches
    return (
        (t < previous_t)
        | (np.uint64(np.int64(x)) >= np.uint64(width))
        | (np.uint64(np.int64(y)) >= np.uint64(height))
    )


@jit
def scan_events(events, width, height):
    """First bad event (or ALL_VALID), and the largest x and y, in one pass."""
    max_x = -1
    max_y = -1
    previous_t = events[0].t if len(events) else 0
    for i in range(len(events)):
        e = events[i]
        if is_bad(e.x, e.y, e.t, previous_t, width, height):
            return i, max_x, max_y
        previous_t = e.t
        max_x = max(max_x, np.int64(e.x))
        max_y = max(max_y, np.int64(e.y))
    return ALL_VALID, max_x, max_y
