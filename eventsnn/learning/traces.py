"""Synaptic eligibility traces: exponentially decaying memories of recent spikes.

A trace follows ``x <- decay * x + scale * s`` (all-to-all: every past spike counts) or
``x <- scale if s else decay * x`` (nearest-spike: only the last spike counts), with
``decay = exp(-dt / tau)``. The value at step ``t`` includes that step's spikes, so a pre spike
``k`` steps before a post spike leaves ``scale * exp(-k * dt / tau)`` in the pre trace when the post
neuron fires: the STDP window of the rules in :mod:`eventsnn.learning.stdp`.
"""

from __future__ import annotations

import math
from functools import cached_property
from typing import Literal

import torch
from torch import Tensor

from eventsnn.learning import kernels
from eventsnn.learning.errors import LearningError
from eventsnn.nn.functional import NeuronConfig, NeuronState, neuron_sequence

TraceMode = Literal["all_to_all", "nearest"]
TRACE_MODES: tuple[str, ...] = ("all_to_all", "nearest")


def trace_decay(tau: float, dt: float = 1.0) -> float:
    """The per-step decay factor ``exp(-dt / tau)`` of a trace with time constant ``tau``."""
    if tau <= 0 or dt <= 0:
        raise LearningError(f"trace time constant tau and step dt must be > 0, got {tau}, {dt}")
    return math.exp(-dt / tau)


def check_trace_mode(mode: str) -> TraceMode:
    """Return ``mode`` if it is a known trace mode, else raise LearningError naming it."""
    if mode not in TRACE_MODES:
        raise LearningError(f"unknown trace mode {mode!r}; expected one of {TRACE_MODES}")
    return mode  # type: ignore[return-value]


def trace_step(
    trace: Tensor, spikes: Tensor, decay: float, mode: TraceMode = "all_to_all", scale: float = 1.0
) -> Tensor:
    """One step of a trace: decay, then add (all-to-all) or set to ``scale`` (nearest) on spikes."""
    decayed = trace * decay
    if mode == "all_to_all":
        return decayed + scale * spikes
    check_trace_mode(mode)
    return torch.where(spikes > 0, torch.full_like(decayed, scale), decayed)


def trace_sequence(
    spikes: Tensor,
    decay: float,
    initial: Tensor | None = None,
    mode: TraceMode = "all_to_all",
    scale: float = 1.0,
) -> Tensor:
    """Traces of a time-first spike train ``(T, ...)``: the trace after each step, same shape.

    ``initial`` is the trace before the first step (zeros when None), so windows of one recording
    chained through the last value give the same traces as one long run.
    """
    check_trace_mode(mode)
    trace = torch.zeros_like(spikes[0]) if initial is None else initial.to(spikes.dtype)
    if mode == "all_to_all":
        return leaky_integral(spikes * scale if scale != 1.0 else spikes, decay, trace)
    out = torch.empty_like(spikes)
    for t in range(spikes.shape[0]):
        trace = trace_step(trace, spikes[t], decay, mode, scale)
        out[t] = trace
    return out


def leaky_integral(inputs: Tensor, decay: float, initial: Tensor) -> Tensor:
    """``x[t] = decay * x[t-1] + inputs[t]`` over time, from ``x[-1] = initial``: a neuron that
    never fires, so eventsnn.nn's fused neuron recurrence computes it in one pass."""
    never_fires = NeuronConfig(threshold=math.inf, reset="none")
    state = NeuronState(initial)
    beta = torch.tensor(decay, dtype=inputs.dtype, device=inputs.device)
    with torch.no_grad():
        _, membrane, _ = neuron_sequence(inputs, state, beta, None, never_fires)
    return membrane


def traces_before(traces: Tensor, initial: Tensor | None, decay: float) -> Tensor:
    """The traces just before each step's spikes, ``decay * x[t-1]``: what triplet terms read."""
    first = torch.zeros_like(traces[:1]) if initial is None else initial.to(traces.dtype)[None]
    return torch.cat([first, traces[:-1]]) * decay


class Traces:
    """The traces of a time-first spike train ``(T, B, ...)``, computed when read: the whole
    sequence (`full`), or only some flat rows ``t * B + b`` (`rows`). STDP reads pre-synaptic
    traces only where a post-synaptic neuron fired, a few of the T * B rows, so most of the
    sequence never has to be stored. ``active``: the spikes' `kernels.active_inputs` (rows
    t * B + b) when a layer has already found them."""

    def __init__(
        self,
        spikes: Tensor,
        decay: float,
        initial: Tensor | None = None,
        mode: TraceMode = "all_to_all",
        active: kernels.Active | None = None,
    ) -> None:
        self.spikes, self.decay, self.initial = spikes, decay, initial
        self.mode = check_trace_mode(mode)
        self.active = active
        self._last: Tensor | None = None  # the traces after the last step, once a pass made them

    @property
    def shape(self) -> torch.Size:
        """The shape of the whole sequence (that of the spikes)."""
        return self.spikes.shape

    @cached_property
    def full(self) -> Tensor:
        """The traces after every step, as `trace_sequence` gives them."""
        return trace_sequence(self.spikes, self.decay, self.initial, self.mode)

    def _kernel_input(self, *others: Tensor) -> kernels.TraceInput | None:
        """The kernels' view of these traces, or None when they cannot run them (another
        device or dtype) or the whole sequence is already computed."""
        steps, batch = self.spikes.shape[:2]
        flat = self.spikes.reshape(steps, batch, -1)
        if "full" in self.__dict__ or not kernels.applies(flat, *others):
            return None
        active = self.active if self.active and self.active[2].dtype == flat.dtype else None
        initial = None if self.initial is None else self.initial.to(flat.dtype)
        return kernels.TraceInput(flat, active, self.decay, initial, self.mode == "nearest")

    def rows(self, index: Tensor) -> Tensor:
        """The traces at the flat rows ``index`` (t * B + b): ``(len(index), ...)``."""
        source = self._kernel_input()
        if source is None:
            return self.full.flatten(0, 1)[index]
        found, self._last = kernels.trace_rows(source, index)
        return found.view(len(index), *self.spikes.shape[2:])

    def scatter_rows(
        self, rows: Tensor, targets: Tensor, weights: Tensor, size: int, offset: float = 0.0
    ) -> Tensor:
        """``sum_k weights[k] * (traces at row rows[k] - offset)`` added into row ``targets[k]``
        of a ``(size, features)`` matrix: STDP's update with one term per post-synaptic spike,
        without storing the traces when the kernels apply."""
        source = self._kernel_input(weights)
        if source is None:
            return scatter_add_rows(self.rows(rows).flatten(1) - offset, targets, weights, size)
        update, self._last = kernels.trace_scatter(source, rows, targets, weights, size, offset)
        return update

    def last(self) -> Tensor:
        """The traces after the last step ``(B, ...)``: where the next window starts from (kept
        from the pass that made them, if any)."""
        if self._last is None:
            source = self._kernel_input()
            if source is None:
                return self.full[-1]
            self._last = kernels.trace_rows(source, torch.zeros(0, dtype=torch.long))[1]
        return self._last.view(self.spikes.shape[1:])


def scatter_add_rows(values: Tensor, targets: Tensor, weights: Tensor, size: int) -> Tensor:
    """``out[targets[k]] += weights[k] * values[k]`` into a ``(size, features)`` zero matrix."""
    out = values.new_zeros(size, values.shape[1])
    return out.index_add_(0, targets, values * weights.unsqueeze(1))


def as_tensor(traces: Tensor | Traces) -> Tensor:
    """The whole sequence of ``traces`` (a tensor is returned as it is)."""
    return traces.full if isinstance(traces, Traces) else traces
