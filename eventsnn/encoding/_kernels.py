"""Numba kernels: single fused passes over the structured event array.

Reading the fields of a structured array one by one costs a strided copy per field; these kernels
read each 15-byte record once instead. They take arrays of `EVENT_DTYPE` (contiguous, 1-D) and
trust their shapes; the pure functions in this package call them after the boundary checks.
Kernels that also check the events return the index of the first unsorted or out-of-sensor event
(`-1` when all are fine) so the caller can raise `EventsError` with `events.validate`'s message.
Compiled kernels are cached on disk (`cache=True`) so only the first run on a machine compiles.
"""

from __future__ import annotations

import numpy as np

from eventsnn.events.scan import ALL_VALID, is_bad, jit

MIXED_POLARITY = -2
"""Returned by the frame kernel when a single-polarity sensor receives both polarities."""
NEVER = -(2**62)
"""Last-event time of a pixel that has not fired: t - NEVER exceeds any window, without overflow."""


@jit
def search_times(events, times):
    """Like np.searchsorted(events["t"], times, side="left") without copying the t field."""
    out = np.empty(len(times), np.int64)
    n = len(events)
    for k in range(len(times)):
        lo = 0
        hi = n
        while lo < hi:
            mid = (lo + hi) >> 1
            if events[mid].t < times[k]:
                lo = mid + 1
            else:
                hi = mid
        out[k] = lo
    return out


@jit
def _check_and_count(events, lo, hi, width, height, flat, offset, plane, one_channel, count):
    """Check events[lo:hi] and, when count, add them to flat[offset + (p * H + y) * W + x].

    Sortedness is checked against event lo - 1 too. Returns the first bad event (or ALL_VALID)
    and the polarities seen (bit 1: ON, bit 2: OFF).
    """
    previous_t = events[lo - 1].t if lo > 0 else events[0].t
    seen = 0
    for i in range(lo, hi):
        e = events[i]
        if is_bad(e.x, e.y, e.t, previous_t, width, height):
            return i, seen
        previous_t = e.t
        seen |= 1 if e.p else 2
        if count:
            channel = 0 if one_channel else np.int64(e.p)
            flat[offset + channel * plane + np.int64(e.y) * width + np.int64(e.x)] += 1
    return ALL_VALID, seen


@jit
def accumulate_frames(events, starts, ends, width, height, out):
    """Count events into frames out[k, p, y, x] for the index slices [starts[k], ends[k]).

    Slices may overlap or leave gaps; starts and ends are non-decreasing. Every event is checked
    (those in no slice too). A one-polarity `out` takes both polarities only when the events do
    not mix them (tonic's rule), else MIXED_POLARITY.
    """
    n = len(events)
    flat = out.reshape(-1)
    plane = width * height
    frame_size = out.shape[1] * plane
    one_channel = out.shape[1] == 1
    seen = 0
    checked_to = 0
    for k in range(len(starts) + 1):
        lo = min(starts[k], n) if k < len(starts) else n
        if lo > checked_to:
            bad, polarities = _check_and_count(
                events, checked_to, lo, width, height, flat, 0, plane, one_channel, False
            )
            seen |= polarities
            if bad != ALL_VALID:
                return bad
        if k == len(starts):
            break
        hi = min(ends[k], n)
        if hi > lo:
            bad, polarities = _check_and_count(
                events, lo, hi, width, height, flat, k * frame_size, plane, one_channel, True
            )
            seen |= polarities
            if bad != ALL_VALID:
                return bad
        checked_to = max(checked_to, hi)
    if one_channel and seen == 3:
        return MIXED_POLARITY
    return ALL_VALID


@jit
def _voxel_position(t, t0, duration, n_bins):
    """tonic's normalised time, operation for operation: n * (float(t) - t0) / duration."""
    if duration == 0:
        return 0.0
    return n_bins * (np.float64(t) - np.float64(t0)) / np.float64(duration)


@jit
def _voxel_block_starts(events, n_bins, t0, duration):
    """starts[k]: first event whose bin (int of its position) is >= k, for k = 0..n_bins + 1."""
    n = len(events)
    starts = np.empty(n_bins + 2, np.int64)
    starts[0] = 0
    for k in range(1, n_bins + 1):
        lo = starts[k - 1]
        hi = n
        while lo < hi:
            mid = (lo + hi) >> 1
            if np.int64(_voxel_position(events[mid].t, t0, duration, n_bins)) < k:
                lo = mid + 1
            else:
                hi = mid
        starts[k] = lo
    starts[n_bins + 1] = n
    return starts


@jit
def accumulate_voxels(events, n_bins, width, height, out):
    """Bilinear-in-time voxel grid into flat `out` (n_bins * height * width), in one pass.

    tonic adds every left weight, then every right weight (two `np.add.at` calls); the floating
    sums equal its only in that order. Bin k receives left weights from the events of bin k and
    right weights from those of bin k - 1, so visiting the bins' event blocks from last to first
    (events in time order inside a block) reproduces tonic's order while reading each event
    once. Polarity counts as +1 / -1; a zero-duration recording puts every event in bin 0.
    Checks every event.
    """
    n = len(events)
    if n == 0:
        return ALL_VALID
    t0 = events[0].t
    duration = events[n - 1].t - t0
    plane = width * height
    starts = _voxel_block_starts(events, n_bins, t0, duration)
    for block in range(n_bins, -1, -1):
        lo = starts[block]
        previous_t = events[lo - 1].t if lo > 0 else t0
        for i in range(lo, starts[block + 1]):
            e = events[i]
            if is_bad(e.x, e.y, e.t, previous_t, width, height):
                return i
            previous_t = e.t
            position = _voxel_position(e.t, t0, duration, n_bins)
            left = np.int64(position)
            fraction = position - left
            sign = 1.0 if e.p else -1.0
            cell = np.int64(e.x) + np.int64(e.y) * width + left * plane
            if left < n_bins:
                out[cell] += sign * (1.0 - fraction)
            if left + 1 < n_bins:
                out[cell + plane] += sign * fraction
    return ALL_VALID


@jit
def denoise_mask(events, filter_time, width, height):
    """Keep an event when one of its 4 neighbours fired less than filter_time before it.

    Pixel memory (flat, column stride height + 2) is padded by one pixel of NEVER on each side,
    so there are no border tests and no branches: the newest neighbour decides.
    """
    stride = height + 2
    last = np.full((width + 2) * stride, NEVER, np.int64)
    keep = np.empty(len(events), np.bool_)
    for i in range(len(events)):
        e = events[i]
        cell = (np.int64(e.x) + 1) * stride + np.int64(e.y) + 1
        t = e.t
        last[cell] = t
        newest = max(
            max(last[cell - stride], last[cell + stride]), max(last[cell - 1], last[cell + 1])
        )
        keep[i] = t - newest < filter_time
    return keep


@jit
def refractory_mask(events, delta, width, height):
    """Keep an event when its pixel's previous event (kept or not) is more than delta before it."""
    last = np.full((width, height), NEVER, np.int64)
    keep = np.empty(len(events), np.bool_)
    for i in range(len(events)):
        e = events[i]
        keep[i] = e.t - last[e.x, e.y] > delta
        last[e.x, e.y] = e.t
    return keep


@jit
def decimation_mask(events, n, width, height):
    """Keep every n-th event of each pixel (the n-th, 2n-th, ...)."""
    count = np.zeros((width, height), np.int64)
    keep = np.empty(len(events), np.bool_)
    for i in range(len(events)):
        e = events[i]
        count[e.x, e.y] += 1
        keep[i] = count[e.x, e.y] >= n
        if keep[i]:
            count[e.x, e.y] = 0
    return keep


@jit
def last_times(events, ends, out):
    """out[k, p, y, x] = time of the last event at (p, y, x) among events[:ends[k]] (-inf: none)."""
    n_pol, height, width = out.shape[1], out.shape[2], out.shape[3]
    size = n_pol * height * width
    flat = out.reshape(len(ends), size)
    memory = np.full(size, -np.inf)
    i = 0
    for k in range(len(ends)):
        while i < min(ends[k], len(events)):
            e = events[i]
            channel = min(np.int64(e.p), n_pol - 1)
            memory[(channel * height + e.y) * width + e.x] = e.t
            i += 1
        for j in range(size):
            flat[k, j] = memory[j]
    return out


@jit
def compact(events, keep):
    """events[keep] as a new array, copying whole records."""
    n_kept = 0
    for i in range(len(keep)):
        n_kept += keep[i]
    out = np.empty(n_kept, events.dtype)
    j = 0
    for i in range(len(keep)):
        if keep[i]:
            out[j] = events[i]
            j += 1
    return out
