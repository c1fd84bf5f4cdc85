"""Fused CPU kernels (numba) for STDP training: the competitive layer's window and traces read
only where a rule needs them.

`competitive_window` runs a whole window of `CompetitiveLayer` (sparse synaptic sums, LIF steps
with lateral inhibition, k-WTA) in one pass per sample instead of ~10 torch calls per time step;
the float operations are those of the torch path (`eventsnn.nn.kernels`' neuron helpers), so the
spikes are the same. `trace_rows` gives a spike train's traces at chosen (step, sample) rows only:
each input keeps its value and the step it was last updated, so a step costs its active inputs
and a row costs one decay per input, instead of decaying every trace at every step.
"""

from __future__ import annotations

import numpy as np
import torch
from numba import njit
from torch import Tensor

from eventsnn.nn.kernels import JIT_OPTIONS, clamp_low, reset_value, run_in_parts, spike_value

_BETA, _THRESHOLD, _LOW, _INHIBITION, _ZERO, _ONE = range(6)


def applies(*tensors: Tensor) -> bool:
    """True when the kernels can take these tensors: CPU floats of one dtype."""
    first = tensors[0]
    return all(
        t.device.type == "cpu"
        and t.dtype == first.dtype
        and t.dtype in (torch.float32, torch.float64)
        for t in tensors
    )


@njit(**JIT_OPTIONS)
def _count_active(rows, counts, lo, hi):  # pragma: no cover
    for r in range(lo, hi):
        row = rows[r]
        n = 0
        for i in range(row.shape[0]):
            n += np.int32(row[i] != 0)
        counts[r] = n


@njit(**JIT_OPTIONS)
def _gather_active(rows, starts, indices, lo, hi):  # pragma: no cover
    for r in range(lo, hi):
        row = rows[r]
        k = starts[r]
        for i in range(row.shape[0]):  # branch-free: every input is written, only actives kept
            indices[k] = i
            k += row[i] != 0


def active_inputs(rows: Tensor) -> tuple[Tensor, Tensor]:
    """The non-zero inputs of each row of ``rows`` (R, F) in CSR form: ``(starts (R + 1,),
    indices)``; row r's are ``indices[starts[r]:starts[r + 1]]``, in increasing order."""
    rows = rows.contiguous()
    counts = torch.empty(len(rows), dtype=torch.int64)
    run_in_parts(_count_active, (rows, counts), len(rows), grain=64)
    starts = torch.zeros(len(rows) + 1, dtype=torch.int64)
    torch.cumsum(counts, 0, out=starts[1:])
    total = int(starts[-1]) + 1  # one spare slot: the branch-free gather writes one past a row
    indices = torch.empty(total, dtype=torch.int32)
    run_in_parts(_gather_active, (rows, starts, indices), len(rows), grain=64)
    return starts, indices


@njit(**JIT_OPTIONS)
def _sparse_rows_matmul(rows, starts, indices, weight_t, out, lo, hi):  # pragma: no cover
    n_out = weight_t.shape[1]
    for r in range(lo, hi):
        values = rows[r]
        acc = out[r]
        acc[:] = 0
        k, end = starts[r], starts[r + 1]
        while k + 4 <= end:  # four weight rows a pass (a quarter of the loads and stores of acc),
            w0, w1 = weight_t[indices[k]], weight_t[indices[k + 1]]  # summed in the same order
            w2, w3 = weight_t[indices[k + 2]], weight_t[indices[k + 3]]
            x0, x1 = values[indices[k]], values[indices[k + 1]]
            x2, x3 = values[indices[k + 2]], values[indices[k + 3]]
            for j in range(n_out):
                acc[j] = (((acc[j] + x0 * w0[j]) + x1 * w1[j]) + x2 * w2[j]) + x3 * w3[j]
            k += 4
        for rest in range(k, end):
            w0, x0 = weight_t[indices[rest]], values[indices[rest]]
            for j in range(n_out):
                acc[j] = acc[j] + x0 * w0[j]


def sparse_rows_matmul(rows: Tensor, weight: Tensor) -> Tensor:
    """``rows @ weight.T`` for sparse rows (R, F): only the active inputs' weight rows are read
    (summed in input order, as torch's embedding_bag does)."""
    rows = rows.contiguous()
    out = rows.new_empty(len(rows), weight.shape[0])
    args = (rows, *active_inputs(rows), weight.t().contiguous(), out)
    run_in_parts(_sparse_rows_matmul, args, len(out), grain=256)
    return out


@njit(**JIT_OPTIONS)
def _competitive_kernel(current, gain, sc, has_low, winners, out, lo, hi):  # pragma: no cover
    steps, _, n_out = current.shape
    zero, one = sc[_ZERO], sc[_ONE]
    v = np.empty(n_out, current.dtype)
    u = np.empty(n_out, current.dtype)
    s = np.empty(n_out, current.dtype)
    previous = np.empty(n_out, current.dtype)
    for b in range(lo, hi):
        v[:] = zero
        previous[:] = zero
        fired = zero
        for t in range(steps):
            count = 0
            for j in range(n_out):
                inhibited = gain[j] * (-(sc[_INHIBITION] * (fired - previous[j])))
                uu = sc[_BETA] * v[j] + (current[t, b, j] * gain[j] + inhibited)
                ss = spike_value(uu, sc[_THRESHOLD], False, zero, one)
                v[j] = clamp_low(reset_value(uu, ss, zero, 1, zero, one), sc[_LOW], has_low, zero)
                u[j] = uu
                s[j] = ss
                count += ss > zero
            if 0 < winners < count:  # k-WTA: the highest membranes among the spiking keep theirs
                for _ in range(winners):
                    best = -1
                    for j in range(n_out):
                        if s[j] > zero and (best < 0 or u[j] > u[best]):
                            best = j
                    s[best] = -one  # marked as kept
                for j in range(n_out):
                    s[j] = one if s[j] < zero else zero
            fired = zero
            for j in range(n_out):
                out[t, b, j] = s[j]
                previous[j] = s[j]
                fired += s[j]


def competitive_window(
    spikes: Tensor,
    weight: Tensor,
    gain: Tensor,
    *,
    beta: float,
    threshold: float,
    low: float | None,
    inhibition: float,
    winners: int | None,
) -> Tensor:
    """Output spikes ``(T, B, out)`` of a `CompetitiveLayer` window on input spikes ``(T, B, in)``:
    synaptic input ``gain * (spikes @ weight.T)``, LIF steps (reset to zero, lower bound ``low``),
    inhibition ``-gain * inhibition`` per spike of the other neurons at the step before, and at
    most ``winners`` spikes a step (highest membrane first; None: no limit)."""
    steps, batch, _ = spikes.shape
    current = sparse_rows_matmul(spikes.flatten(0, 1), weight)
    out = spikes.new_empty(steps, batch, weight.shape[0])
    sc = torch.tensor(
        [beta, threshold, 0.0 if low is None else low, inhibition, 0.0, 1.0], dtype=spikes.dtype
    )
    args = (current.view(steps, batch, -1), gain.contiguous(), sc, low is not None, winners or 0)
    run_in_parts(_competitive_kernel, (*args, out), batch, grain=1)
    return out


@njit(**JIT_OPTIONS)
def _trace_rows_kernel(
    spikes, sc, initial, nearest, starts, row_steps, out, lo, hi
):  # pragma: no cover
    decay, scale, zero = sc[0], sc[1], sc[2]
    x = np.empty(spikes.shape[2], spikes.dtype)
    for b in range(lo, hi):
        if starts[b] == starts[b + 1]:
            continue
        x[:] = initial[b]
        done = 0
        for q in range(starts[b], starts[b + 1]):
            for t in range(done, row_steps[q] + 1):  # `trace_step`'s recurrence, kept in place
                row = spikes[t, b]
                if nearest:
                    for i in range(x.shape[0]):
                        x[i] = scale if row[i] > zero else x[i] * decay
                else:
                    for i in range(x.shape[0]):
                        x[i] = decay * x[i] + scale * row[i]
            done = max(done, row_steps[q] + 1)
            out[q] = x


def trace_rows(
    spikes: Tensor,
    decay: float,
    initial: Tensor | None,
    nearest: bool,
    rows: Tensor,
    scale: float = 1.0,
) -> Tensor:
    """Traces of ``spikes`` (T, B, F) at the flat rows ``t * B + b`` in ``rows``: ``(len(rows),
    F)``, the rows of `eventsnn.learning.traces.trace_sequence` without storing the others."""
    steps, batch, features = spikes.shape
    steps_of, samples_of = rows // batch, rows % batch
    order = torch.argsort(samples_of * steps + steps_of)
    starts = torch.zeros(batch + 1, dtype=torch.int64)
    torch.cumsum(torch.bincount(samples_of, minlength=batch), 0, out=starts[1:])
    start = spikes.new_zeros(batch, features) if initial is None else initial.reshape(batch, -1)
    sc = torch.tensor([decay, scale, 0.0], dtype=spikes.dtype)
    out = spikes.new_empty(len(rows), features)
    args = (spikes.contiguous(), sc, start.to(spikes.dtype).contiguous(), nearest, starts)
    run_in_parts(_trace_rows_kernel, (*args, steps_of[order].contiguous(), out), batch, grain=1)
    result = torch.empty_like(out)
    result[order] = out  # back in the callers' order
    return result
