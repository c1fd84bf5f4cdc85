"""Synaptic eligibility traces: exponentially decaying memories of recent spikes.

A trace follows ``x <- decay * x + scale * s`` (all-to-all: every past spike counts) or
``x <- scale if s else decay * x`` (nearest-spike: only the last spike counts), with
``decay = exp(-dt / tau)``. The value at step ``t`` includes that step's spikes, so a pre spike
``k`` steps before a post spike leaves ``scale * exp(-k * dt / tau)`` in the pre trace when the post
neuron fires: the STDP window of the rules in :mod:`eventsnn.learning.stdp`.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor

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
