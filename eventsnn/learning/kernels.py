"""Fused CPU kernels (numba) for STDP training: the competitive layer's window and traces read
only where a rule needs them.

`competitive_window` runs a whole window of `CompetitiveLayer` (sparse synaptic sums, LIF steps
with lateral inhibition, k-WTA) in one pass per sample instead of ~10 torch calls per time step;
for 0/1 spikes the float operations are those of the torch path (`eventsnn.nn.kernels`' neuron
helpers), so the spikes are the same. `active_inputs` lists each
row's non-zero inputs once (CSR), so that the synaptic sums and the traces visit only those.
`trace_rows` and `trace_scatter` run each sample's traces in place and read them only at the
queried (step, sample) rows: STDP needs pre-synaptic traces only where a post-synaptic neuron
fired, so the T x B x inputs sequence is never stored.
"""

from __future__ import annotations

from typing import NamedTuple

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
def _gather_active(rows, starts, indices, values):  # pragma: no cover
    k = 0
    for r in range(rows.shape[0]):
        row = rows[r]
        starts[r] = k
        for i in range(row.shape[0]):  # branch-free: every input is written, only actives kept
            indices[k] = i
            values[k] = row[i]
            k += row[i] != 0
    starts[rows.shape[0]] = k


Active = tuple[Tensor, Tensor, Tensor]
"""The non-zero inputs of rows (R, F) in CSR form: ``(starts (R + 1,), indices, values)``."""


def active_inputs(rows: Tensor) -> Active:
    """The non-zero inputs of each row of ``rows`` (R, F): row r's are ``indices[starts[r]:
    starts[r + 1]]`` (increasing) with their ``values``; later passes then read only these.
    The CSR of ``Tensor.to_sparse_csr``, made in one branch-free pass (3x faster here)."""
    rows = rows.contiguous()
    starts = torch.empty(len(rows) + 1, dtype=torch.int64)
    # room for every input: untouched pages of the tail are never mapped, so this costs nothing
    indices = torch.empty(rows.numel() + 1, dtype=torch.int32)
    values = rows.new_empty(rows.numel() + 1)
    _gather_active(rows.detach().numpy(), starts.numpy(), indices.numpy(), values.numpy())
    return starts, indices, values


@njit(**JIT_OPTIONS)
def _sparse_rows_matmul(starts, indices, values, weight_t, out, lo, hi):  # pragma: no cover
    n_out = weight_t.shape[1]
    for r in range(lo, hi):
        acc = out[r]
        acc[:] = 0
        k, end = starts[r], starts[r + 1]
        while k + 4 <= end:  # four weight rows a pass (a quarter of the loads and stores of acc),
            w0, w1 = weight_t[indices[k]], weight_t[indices[k + 1]]  # summed in the same order
            w2, w3 = weight_t[indices[k + 2]], weight_t[indices[k + 3]]
            x0, x1, x2, x3 = values[k], values[k + 1], values[k + 2], values[k + 3]
            for j in range(n_out):
                acc[j] = (((acc[j] + x0 * w0[j]) + x1 * w1[j]) + x2 * w2[j]) + x3 * w3[j]
            k += 4
        for rest in range(k, end):
            w0, x0 = weight_t[indices[rest]], values[rest]
            for j in range(n_out):
                acc[j] = acc[j] + x0 * w0[j]


def sparse_rows_matmul(rows: Tensor, weight_t: Tensor, active: Active | None = None) -> Tensor:
    """``rows @ weight_t`` for sparse rows (R, F) and weights by input ``weight_t`` (F, out):
    only the active inputs' weight rows are read, summed in input order (as torch's
    embedding_bag: equal to it for 0/1 rows; other values may round differently in the last
    bit). ``active``: `active_inputs(rows)` when already known."""
    out = rows.new_empty(len(rows), weight_t.shape[1])
    args = (*(active or active_inputs(rows)), weight_t.contiguous(), out)
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
    weight_t: Tensor,
    gain: Tensor,
    *,
    beta: float,
    threshold: float,
    low: float | None,
    inhibition: float,
    winners: int | None,
    active: Active | None = None,
) -> Tensor:
    """Output spikes ``(T, B, out)`` of a `CompetitiveLayer` window on input spikes ``(T, B, in)``
    and weights by input ``weight_t`` (in, out): synaptic input ``gain * (spikes @ weight_t)``,
    LIF steps (reset to zero, lower bound ``low``), inhibition ``-gain * inhibition`` per spike
    of the other neurons at the step before, and at most ``winners`` spikes a step (highest
    membrane first; None: no limit). ``active``: the `active_inputs` of ``spikes.flatten(0, 1)``
    when already known. For 0/1 spikes the float operations are those of the torch path (the
    same spikes); other values may round differently in the last bit."""
    steps, batch, _ = spikes.shape
    current = sparse_rows_matmul(spikes.flatten(0, 1), weight_t, active)
    out = spikes.new_empty(steps, batch, weight_t.shape[1])
    sc = torch.tensor(
        [beta, threshold, 0.0 if low is None else low, inhibition, 0.0, 1.0], dtype=spikes.dtype
    )
    current = current.view(steps, batch, weight_t.shape[1])
    args = (current, gain.contiguous(), sc, low is not None, winners or 0)
    run_in_parts(_competitive_kernel, (*args, out), batch, grain=1, align=1)
    return out


@njit(inline="always", **JIT_OPTIONS)
def _advance(x, active, b, batch, start, stop, nearest, sc):  # pragma: no cover
    """Steps ``start .. stop - 1`` of sample b's traces ``x``, in place: `trace_step`'s float
    operations (decay all, then each active input adds its value, or sets 1 when nearest)."""
    decay, one, zero = sc[0], sc[1], sc[2]
    starts, indices, values = active
    for t in range(start, stop):
        for i in range(x.shape[0]):
            x[i] = x[i] * decay
        for k in range(starts[t * batch + b], starts[t * batch + b + 1]):
            i = indices[k]
            if not nearest:
                x[i] = x[i] + values[k]
            elif values[k] > zero:
                x[i] = one


@njit(**JIT_OPTIONS)
def _trace_kernel(
    active, sc, initial, nearest, queries, steps, targets, weights, out, last, lo, hi
):  # pragma: no cover
    """Runs each sample's traces over all steps; at query q writes them to ``out[q]`` or, with
    targets, adds ``weights[q] * (trace - offset)`` to ``out[targets[q]]``; the traces after
    the last step go to ``last``."""
    batch = initial.shape[0]
    offset, n_steps = sc[3], (len(active[0]) - 1) // batch
    scatter = len(targets) > 0
    for b in range(lo, hi):
        x = last[b]
        x[:] = initial[b]
        done = 0
        for q in range(queries[b], queries[b + 1]):
            _advance(x, active, b, batch, done, steps[q] + 1, nearest, sc)
            done = max(done, steps[q] + 1)
            if scatter:
                target, weight = out[targets[q]], weights[q]
                for i in range(x.shape[0]):
                    target[i] += weight * (x[i] - offset)
            else:
                out[q] = x
        _advance(x, active, b, batch, done, n_steps, nearest, sc)


class TraceInput(NamedTuple):
    """What the trace kernels read: spikes ``(T, B, F)``, their `active_inputs` (None: found
    here), the per-step decay, the traces before the first step (None: zeros) and the mode."""

    spikes: Tensor
    active: Active | None
    decay: float
    initial: Tensor | None
    nearest: bool


def _run_traces(
    source: TraceInput,
    rows: Tensor,
    out: Tensor,
    scatter: tuple[Tensor, Tensor, float] | None = None,
) -> tuple[Tensor, Tensor]:
    """`_trace_kernel` over the queries ``rows`` (flat t * B + b), taken sample by sample in time
    order; returns the order in which they were taken and the traces after the last step."""
    steps, batch, features = source.spikes.shape
    active = source.active or active_inputs(source.spikes.reshape(steps * batch, features))
    if len(active[0]) != steps * batch + 1:
        raise ValueError(f"the active inputs list {len(active[0]) - 1} rows, not {steps * batch}")
    steps_of, samples_of = rows // batch, rows % batch
    order = torch.argsort(samples_of * steps + steps_of)
    queries = torch.zeros(batch + 1, dtype=torch.int64)
    torch.cumsum(torch.bincount(samples_of, minlength=batch), 0, out=queries[1:])
    dtype = active[2].dtype
    last = torch.zeros(batch, features, dtype=dtype)
    if source.initial is not None:
        last.copy_(source.initial.reshape(batch, features))
    targets, weights, offset = scatter or (rows[:0], last.new_empty(0), 0.0)
    if scatter:
        targets, weights = targets[order].contiguous(), weights[order].to(dtype).contiguous()
    sc = torch.tensor([source.decay, 1.0, 0.0, offset], dtype=dtype)
    args = (tuple(a.numpy() for a in active), sc, last.clone(), source.nearest, queries)
    args += (steps_of[order].contiguous(), targets, weights, out, last)
    # scattered queries of different samples may add to the same target row: one part then
    run_in_parts(_trace_kernel, args, batch, grain=max(batch, 1) if scatter else 1, align=1)
    return order, last


def trace_rows(source: TraceInput, rows: Tensor) -> tuple[Tensor, Tensor]:
    """Traces at the flat rows ``t * B + b`` in ``rows``: ``(len(rows), F)``, the rows of
    `eventsnn.learning.traces.trace_sequence` without storing the others; and the traces after
    the last step ``(B, F)``."""
    out = source.spikes.new_empty(len(rows), source.spikes.shape[2])
    order, last = _run_traces(source, rows, out)
    result = torch.empty_like(out)
    result[order] = out  # back in the callers' order
    return result, last


def trace_scatter(
    source: TraceInput,
    rows: Tensor,
    targets: Tensor,
    weights: Tensor,
    size: int,
    offset: float = 0.0,
) -> tuple[Tensor, Tensor]:
    """``out[targets[k]] += weights[k] * (trace at rows[k] - offset)`` for every k, into a
    ``(size, F)`` zero matrix: an STDP update with one term per post-synaptic spike, with no
    trace stored; and the traces after the last step ``(B, F)``."""
    out = source.spikes.new_zeros(size, source.spikes.shape[2])
    return out, _run_traces(source, rows, out, (targets, weights, offset))[1]
