"""The stateful stream runner: events in, one result per output window out, as they happen.

``StreamRunner`` bins arriving events into time steps (``StepBinner``: exactly the frames of
``to_frame(time_window=step_us)`` on the whole recording), runs the spiking network on the steps
with its neuron state kept between calls, and emits a ``StreamResult`` per window of
``window_steps`` steps. Steps that queue up while the model runs are processed in one multi-step
call (exact: chunked multi-step runs with carried state equal one run), so the output sequence for
any chunking of a recording equals the model run offline on the whole recording. Only when more
than ``max_queue_steps`` steps wait does it drop the oldest ones, counting their events.

State: reset on command (``reset``/``request_reset``), after a gap of more than ``reset_gap_us``
without events (the empty steps of the gap are then skipped, not run), or never (the default).
"""

from __future__ import annotations

import collections
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from eventsnn.nn import reset_states
from eventsnn.streaming.binning import StepBatch, StepBinner
from eventsnn.streaming.sources import Packet

LATENCY_WINDOW = 1 << 17
"""Latency percentiles are over this many most recent results (bounded memory)."""

Readout = Callable[[np.ndarray], np.ndarray]
"""Output of the network summed over a window (K,) -> class probabilities (K,)."""


def softmax_readout(counts: np.ndarray) -> np.ndarray:
    """Class probabilities as the softmax of the output spike counts (the spike-count readout)."""
    shifted = np.exp(counts - counts.max())
    return shifted / shifted.sum()


@dataclass
class StreamResult:
    """What the runner says about one output window."""

    step: int
    """Index of the window's first time step (step k starts at origin + k * step_us)."""
    t_start_us: int
    t_stop_us: int
    events: int
    spike_counts: np.ndarray
    """The network's output summed over the window's steps, (K,)."""
    probabilities: np.ndarray
    label: int
    latency_ms: float
    """From the arrival of the window's last event (or of the event that closed an empty last
    step) to the emission of this result."""
    dropped_events: int = 0
    """Events dropped (queue bound) since the previous result."""
    reset: bool = False
    """Whether the neuron state was reset just before this window."""

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready values (lists and plain numbers)."""
        return {
            "step": self.step,
            "t_start_us": self.t_start_us,
            "t_stop_us": self.t_stop_us,
            "events": self.events,
            "label": self.label,
            "probabilities": [round(float(p), 6) for p in self.probabilities],
            "spike_counts": self.spike_counts.tolist(),
            "latency_ms": round(self.latency_ms, 4),
            "dropped_events": self.dropped_events,
            "reset": self.reset,
        }


@dataclass
class RunnerStats:
    """Running totals for the live status line and the final summary."""

    events: int = 0
    steps: int = 0
    results: int = 0
    model_calls: int = 0
    dropped_events: int = 0
    dropped_steps: int = 0
    skipped_steps: int = 0
    resets: int = 0
    latency_max_ms: float = 0.0
    started: float = field(default_factory=time.monotonic)
    latencies_ms: collections.deque = field(
        default_factory=lambda: collections.deque(maxlen=LATENCY_WINDOW)
    )

    def latency_percentiles(self) -> dict[str, float]:
        """p50, p99 of the recent latencies and the maximum over the run, in ms."""
        if not self.latencies_ms:
            return {"p50": float("nan"), "p99": float("nan"), "max": float("nan")}
        recent = np.fromiter(self.latencies_ms, dtype=np.float64)
        p50, p99 = np.percentile(recent, [50, 99])
        return {"p50": float(p50), "p99": float(p99), "max": self.latency_max_ms}


class StreamRunner:
    """Runs a spiking network on a stream of events; see the module docstring.

    ``model`` is a network taking time-first input (T, B, P, H, W) and returning (T, B, ...)
    outputs (spikes of the output layer), or the path of an HDF5 checkpoint that
    ``eventsnn.checkpoint.load_model`` rebuilds. ``origin_us`` fixes the time of step 0 (default:
    the first event's time, as tonic's ToFrame).
    """

    def __init__(
        self,
        model: nn.Module | str | os.PathLike,
        sensor_size: Sequence[int],
        step_us: int = 1000,
        window_steps: int = 1,
        origin_us: int | None = None,
        max_queue_steps: int | None = None,
        max_steps_per_call: int = 1024,
        reset_gap_us: int | None = None,
        readout: Readout = softmax_readout,
        device: torch.device | str | None = None,
    ) -> None:
        if window_steps < 1 or max_steps_per_call < 1:
            raise ValueError("window_steps and max_steps_per_call must be at least 1")
        if max_queue_steps is not None and max_queue_steps < 1:
            raise ValueError(f"max_queue_steps must be at least 1 or None, got {max_queue_steps}")
        if isinstance(model, str | os.PathLike):
            from eventsnn.checkpoint import load_model

            model = load_model(model, map_location=device)
        self.model = model.eval()
        self.device = torch.device(device) if device is not None else _device_of(model)
        self.binner = StepBinner(sensor_size, step_us, origin_us=origin_us)
        self.window_steps = window_steps
        self.max_queue_steps = max_queue_steps
        self.max_steps_per_call = max_steps_per_call
        self.reset_gap_steps = None if reset_gap_us is None else -(-reset_gap_us // step_us)
        self.readout = readout
        self.stats = RunnerStats()
        self._reset_requested = False
        self._window_origin = 0  # windows are counted from here (step 0, or the last reset)
        self._window_sum: np.ndarray | None = None
        self._window_events = 0
        self._window_reset = False
        self._pending_dropped = 0
        self._last_event_step: int | None = None

    # -- control -------------------------------------------------------------------------------

    def reset(self) -> None:
        """Reset the neuron state now; the next window starts at the next step."""
        reset_states(self.model)
        self.stats.resets += 1
        self._window_origin = self.binner.next_step
        self._window_sum = None
        self._window_events = 0
        self._window_reset = True

    def request_reset(self) -> None:
        """Ask for a reset before the next step (safe from a signal handler or another thread)."""
        self._reset_requested = True

    # -- feeding -------------------------------------------------------------------------------

    def feed(self, events: np.ndarray, arrival_ns: int | np.ndarray | None = None) -> list:
        """Add events (time-ordered, project dtype) and return the results they complete."""
        self.binner.push(events, time.time_ns() if arrival_ns is None else arrival_ns)
        self.stats.events += len(events)
        return self._process()

    def finish(self) -> list[StreamResult]:
        """End of stream: run the last, incomplete step and emit the last (partial) window."""
        self.binner.flush()
        results = self._process()
        if self._window_sum is not None:
            last = self.binner.next_step - 1
            results.append(self._result(self._window_first_step(last), last, time.time_ns()))
        return results

    def run(
        self,
        source: Iterable[Packet | np.ndarray],
        on_result: Callable[[StreamResult], None] = lambda _: None,
        on_idle: Callable[[], None] = lambda: None,
        finish: bool = True,
    ) -> RunnerStats:
        """Feed every packet of ``source`` and hand each result to ``on_result``.

        ``on_idle`` is called after each packet (for a status line); ``finish`` runs the last
        incomplete step and window when the source ends.
        """
        for packet in source:
            if isinstance(packet, np.ndarray):
                packet = Packet(packet, time.time_ns())
            for result in self.feed(packet.events, packet.arrival_ns):
                on_result(result)
            on_idle()
        if finish:
            for result in self.finish():
                on_result(result)
        return self.stats

    # -- internals -----------------------------------------------------------------------------

    def _process(self) -> list[StreamResult]:
        results: list[StreamResult] = []
        while self.binner.ready:
            if self._reset_requested:
                self._reset_requested = False
                results += self._close_window()
                self.reset()
            self._drop_excess()
            limit = self.max_steps_per_call
            gap = self._next_gap()
            if gap is not None:
                before, after = gap
                if before < self.binner.next_step:  # at the gap: skip its empty steps, reset
                    results += self._close_window()
                    self.stats.skipped_steps += after - self.binner.next_step
                    self.binner.skip_to(after)
                    self._last_event_step = None
                    self.reset()
                    continue
                limit = min(limit, before + 1 - self.binner.next_step)
            batch = self.binner.pop(limit)
            outputs = self._run_model(batch.frames)
            results += self._collect(batch, outputs, time.time_ns())
        return results

    def _drop_excess(self) -> None:
        if self.max_queue_steps is None or self.binner.ready <= self.max_queue_steps:
            return
        steps = self.binner.ready - self.max_queue_steps
        dropped = self.binner.drop(steps)
        self.stats.dropped_steps += steps
        self.stats.dropped_events += dropped
        self._pending_dropped += dropped

    def _next_gap(self) -> tuple[int, int] | None:
        """The first gap longer than ``reset_gap_us`` ahead: (last step before, first after)."""
        if self.reset_gap_steps is None:
            return None
        known = self.binner.event_steps()
        if self._last_event_step is not None:
            known.insert(0, self._last_event_step)
        for before, after in zip(known[:-1], known[1:], strict=True):
            if after - before > self.reset_gap_steps:
                return before, after
        return None

    def _run_model(self, frames: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(frames).unsqueeze(1).to(self.device)
        with torch.no_grad():
            out = self.model(x)
        self.stats.model_calls += 1
        self.stats.steps += len(frames)
        return out.reshape(len(frames), -1).to("cpu", torch.float64).numpy()

    def _window_first_step(self, step: int) -> int:
        offset = (step - self._window_origin) // self.window_steps * self.window_steps
        return self._window_origin + offset

    def _collect(self, batch: StepBatch, outputs: np.ndarray, now_ns: int) -> list[StreamResult]:
        """Add the steps' outputs to their windows; emit the windows that are complete."""
        results = []
        steps = np.arange(batch.first_step, batch.first_step + len(batch))
        with_events = steps[batch.events > 0]
        if with_events.size:
            self._last_event_step = int(with_events[-1])
        ends = np.flatnonzero((steps - self._window_origin + 1) % self.window_steps == 0)
        start = 0
        for end in [*ends.tolist(), len(batch) - 1]:
            if end < start:
                continue
            part = slice(start, end + 1)
            total = outputs[part].sum(axis=0)
            self._window_sum = total if self._window_sum is None else self._window_sum + total
            self._window_events += int(batch.events[part].sum())
            if end in ends:
                first = self._window_first_step(int(steps[end]))
                results.append(self._result(first, int(steps[end]), now_ns, batch.arrival_ns[end]))
            start = end + 1
        return results

    def _close_window(self) -> list[StreamResult]:
        """Emit the partial window in progress (before a reset)."""
        if self._window_sum is None:
            return []
        last = self.binner.next_step - 1
        return [self._result(self._window_first_step(last), last, time.time_ns())]

    def _result(
        self, first: int, last: int, now_ns: int, arrival_ns: int | None = None
    ) -> StreamResult:
        counts = self._window_sum
        probabilities = self.readout(counts)
        latency_ms = 0.0 if arrival_ns is None else max(now_ns - int(arrival_ns), 0) / 1e6
        result = StreamResult(
            step=first,
            t_start_us=self.binner.step_start_us(first),
            t_stop_us=self.binner.step_start_us(last + 1),
            events=self._window_events,
            spike_counts=counts,
            probabilities=probabilities,
            label=int(np.argmax(probabilities)),
            latency_ms=latency_ms,
            dropped_events=self._pending_dropped,
            reset=self._window_reset,
        )
        self._window_sum = None
        self._window_events = 0
        self._window_reset = False
        self._pending_dropped = 0
        self.stats.results += 1
        if arrival_ns is not None:
            self.stats.latencies_ms.append(latency_ms)
            self.stats.latency_max_ms = max(self.stats.latency_max_ms, latency_ms)
        return result


def _device_of(model: nn.Module) -> torch.device:
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")
