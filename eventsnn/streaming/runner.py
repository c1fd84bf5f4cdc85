"""The stateful stream runner: events in, one result per output window out, as they happen.

``StreamRunner`` bins arriving events into time steps (``StepBinner``: exactly the frames of
``to_frame(time_window=step_us)`` on the whole recording), runs the spiking network on the steps
with its neuron state kept between calls, and emits a ``StreamResult`` per window of
``window_steps`` steps. Steps that queue up while the model runs are processed in one multi-step
call (exact: chunked multi-step runs with carried state equal one run), so the output sequence for
any chunking of a recording equals the model run offline on the whole recording. Only when more
than ``max_queue_steps`` steps wait, or when steps already waited more than ``max_lag_ms`` since
their last event arrived (kernel queue included, for UDP), does it drop the oldest ones, counting
every event they held. Without those bounds it never drops (exact, latency unbounded).

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
import pytorch_lightning as pl
import torch
from torch import nn

from eventsnn.models.decisions import decide
from eventsnn.nn import reset_states
from eventsnn.streaming.binning import StepBatch, StepBinner
from eventsnn.streaming.encoding import encoding_from_checkpoint
from eventsnn.streaming.sources import Packet, StreamError

DEFAULT_STEP_US = 1000
"""The step when neither the caller nor the checkpoint's recipe gives one."""
LATENCY_WINDOW = 1 << 17
"""Latency percentiles are over this many most recent results (bounded memory)."""

Readout = Callable[[np.ndarray], np.ndarray]
"""The output activity of N windows (T, N, K) -> class scores (logits) (N, K)."""


def spike_count_readout(activity: np.ndarray) -> np.ndarray:
    """Class scores as the output spike counts over each window (rate coding)."""
    return activity.sum(axis=0)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Probabilities from class scores (over the last axis)."""
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


class ModelAdapter:
    """One call of a network on a batch of steps: output spikes and readout activity.

    A ``SpikingClassifier`` (anything with a ``net`` whose output is the spikes, a ``forward``
    that returns the readout activity, and a ``readout_fn``) is called as a whole, with the spikes
    taken from its network's output; its readout (spike count, max or mean membrane) turns a
    window's activity into class scores. A model that scores whole windows of frames with
    ``logits(frames)`` (``STDPClassifier``: it sums a window's frames and encodes them itself)
    keeps the frames as its activity and is read out once per window; it has no per-step output
    spikes. Any other module is taken as a network whose output is the spikes, read out by spike
    count.
    """

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.classifier = isinstance(getattr(model, "net", None), nn.Module) and callable(
            getattr(model, "readout_fn", None)
        )
        self.windowed = not self.classifier and callable(getattr(model, "logits", None))
        if not (self.classifier or self.windowed) and isinstance(model, pl.LightningModule):
            raise StreamError(
                f"{type(model).__name__} cannot be streamed: the runner reads out a "
                "SpikingClassifier (net + readout), a model with logits(frames) per window, "
                "or a plain spiking network"
            )
        self._spikes: torch.Tensor | None = None
        if self.classifier:
            model.net.register_forward_hook(self._keep_spikes)
        shape = getattr(model, "input_shape", None)
        self.input_shape = None if shape is None else tuple(int(s) for s in shape)
        if self.windowed and self.input_shape is None:
            raise StreamError(f"{type(model).__name__} does not say its input_shape")

    def _keep_spikes(self, _: nn.Module, __: Any, spikes: torch.Tensor) -> None:
        self._spikes = spikes

    def __call__(self, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """Spikes and activity (T, K) of a (T, 1, ...) input, continuing from the state."""
        n = len(x)
        if self.windowed:  # the window's frames are read out together, in `readout`
            return np.zeros((n, 0)), x.reshape(n, -1).to("cpu", torch.float64).numpy()
        with torch.no_grad():
            activity = self.model(x)
            spikes = self._spikes if self.classifier else activity
        self._spikes = None
        return (
            spikes.reshape(n, -1).to("cpu", torch.float64).numpy(),
            activity.reshape(n, -1).to("cpu", torch.float64).numpy(),
        )

    def readout(self, activity: np.ndarray) -> np.ndarray:
        """Class scores (N, K) of the activity (T, N, K) of N windows."""
        if not (self.classifier or self.windowed):
            return spike_count_readout(activity)
        with torch.no_grad():
            if self.windowed:
                frames = torch.from_numpy(activity).reshape(*activity.shape[:2], *self.input_shape)
                weight = next(self.model.parameters())
                scores = self.model.logits(frames.to(weight.device, weight.dtype))
                return scores.to("cpu", torch.float64).numpy()
            return self.model.readout_fn(torch.from_numpy(activity)).numpy()


@dataclass
class StreamResult:
    """What the runner says about one output window."""

    step: int
    """Index of the window's first time step (step k starts at origin + k * step_us)."""
    t_start_us: int
    t_stop_us: int
    events: int
    spike_counts: np.ndarray
    """The output layer's spikes summed over the window's steps, (K,)."""
    probabilities: np.ndarray
    label: int
    """The top class, -1 when classes tie at the top (a silent output layer decides nothing:
    `eventsnn.models.decisions`)."""
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
    outputs (spikes of the output layer), a ``SpikingClassifier``, or the path of an HDF5
    checkpoint that ``eventsnn.checkpoint.load_model`` rebuilds (then the step, the frame size
    and the per-event filter default to its training recipe's, see ``encoding.py``; else the step
    is 1000 us and the frame size the model's ``input_shape``). ``origin_us`` fixes the time of
    step 0 (default: the first event's time, as tonic's ToFrame). The neuron state starts at rest
    unless ``keep_states`` (e.g. states resumed from a checkpoint written by ``save_states``).

    ``event_filter`` maps each arriving chunk of events before binning (e.g. the training
    pipeline's ``Downsample`` or ``CenterCrop``); it must treat every event on its own (no state
    across events, such as a denoise filter keeps) for the stream to stay exact. ``sensor_size``
    is the size of the binned frames, after the filter (default: the model's ``input_shape``).
    """

    def __init__(
        self,
        model: nn.Module | str | os.PathLike,
        sensor_size: Sequence[int] | None = None,
        step_us: int | None = None,
        window_steps: int = 1,
        origin_us: int | None = None,
        max_queue_steps: int | None = None,
        max_lag_ms: float | None = None,
        max_steps_per_call: int = 1024,
        reset_gap_us: int | None = None,
        readout: Readout | None = None,
        device: torch.device | str | None = None,
        keep_states: bool = False,
        event_filter: Callable[[np.ndarray], np.ndarray] | None = None,
    ) -> None:
        if window_steps < 1 or max_steps_per_call < 1:
            raise ValueError("window_steps and max_steps_per_call must be at least 1")
        if max_queue_steps is not None and max_queue_steps < 1:
            raise ValueError(f"max_queue_steps must be at least 1 or None, got {max_queue_steps}")
        if isinstance(model, str | os.PathLike):
            from eventsnn.checkpoint import load_model

            encoding = encoding_from_checkpoint(model)
            step_us = step_us or encoding.step_us
            event_filter = event_filter or encoding.event_filter
            sensor_size = sensor_size or encoding.frame_size
            model = load_model(model, map_location=device)
        step_us = step_us or DEFAULT_STEP_US
        self.model = model.eval()
        if not keep_states:
            reset_states(self.model)
        self.adapter = ModelAdapter(self.model)
        self.device = torch.device(device) if device is not None else _device_of(model)
        expected = self.adapter.input_shape
        if sensor_size is None:
            if expected is None:
                raise StreamError("give sensor_size: the model does not say its input_shape")
            sensor_size = (expected[2], expected[1], expected[0])
        self.binner = StepBinner(sensor_size, step_us, origin_us=origin_us)
        if expected is not None and expected != self.binner.frame_shape:
            width, height, polarities = expected[2], expected[1], expected[0]
            raise StreamError(
                f"sensor-size mismatch: the stream's sensor {tuple(sensor_size)} gives input "
                f"{self.binner.frame_shape} (P, H, W) but the model takes {expected}; "
                f"use sensor size {width}x{height}x{polarities}"
            )
        self.window_steps = window_steps
        self.max_queue_steps = max_queue_steps
        self.max_lag_ns = None if max_lag_ms is None else int(max_lag_ms * 1e6)
        self.max_steps_per_call = max_steps_per_call
        self.reset_gap_steps = None if reset_gap_us is None else -(-reset_gap_us // step_us)
        self.readout = readout or self.adapter.readout
        self.event_filter = event_filter
        self.stats = RunnerStats()
        self._reset_requested = False
        self._window_origin = 0  # windows are counted from here (step 0, or the last reset)
        self._window_spikes: list[np.ndarray] = []
        self._window_activity: list[np.ndarray] = []
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
        self._window_spikes.clear()
        self._window_activity.clear()
        self._window_events = 0
        self._window_reset = True

    def close_window(self) -> list[StreamResult]:
        """Emit the window in progress now (before a reset, or to end a window early)."""
        if not self._window_spikes:
            return []
        return [self._emit_window(self.binner.next_step - 1, time.time_ns(), None)]

    def request_reset(self) -> None:
        """Ask for a reset before the next step (safe from a signal handler or another thread)."""
        self._reset_requested = True

    def save_states(self, path: str | os.PathLike) -> None:
        """Write the model with its current neuron states to an HDF5 checkpoint, to resume later.

        Resume with ``StreamRunner(path, ..., keep_states=True, origin_us=runner.next_step_us)``.
        """
        from eventsnn.checkpoint import save

        save(self.model, path, states=True)

    @property
    def next_step_us(self) -> int | None:
        """Start time of the first step not run yet (None before the first event)."""
        if self.binner.origin_us is None:
            return None
        return self.binner.step_start_us(self.binner.next_step)

    # -- feeding -------------------------------------------------------------------------------

    def feed(self, events: np.ndarray, arrival_ns: int | np.ndarray | None = None) -> list:
        """Add events (time-ordered, project dtype) and return the results they complete."""
        self.stats.events += len(events)
        if self.event_filter is not None and len(events):
            if not isinstance(arrival_ns, int | None):
                arrival_ns = int(np.max(arrival_ns))  # a filter may drop or move events
            events = self.event_filter(events)
        self.binner.push(events, time.time_ns() if arrival_ns is None else arrival_ns)
        return self._process()

    def finish(self) -> list[StreamResult]:
        """End of stream: run the last, incomplete step and emit the last (partial) window."""
        self.binner.flush()
        return self._process() + self.close_window()

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
                results += self.close_window()
                self.reset()
            self._drop_excess()
            if not self.binner.ready:
                break
            limit = self.max_steps_per_call
            gap = self._next_gap()
            if gap is not None:
                before, after = gap
                if before < self.binner.next_step:  # at the gap: skip its empty steps, reset
                    results += self.close_window()
                    self.stats.skipped_steps += after - self.binner.next_step
                    self.binner.skip_to(after)
                    self._last_event_step = None
                    self.reset()
                    continue
                limit = min(limit, before + 1 - self.binner.next_step)
            batch = self.binner.pop(limit)
            spikes, activity = self._run_model(batch.frames)
            results += self._collect(batch, spikes, activity, time.time_ns())
        return results

    def _drop_excess(self) -> None:
        """Drop the oldest ready steps past the queue bound or older than the lag bound."""
        steps = 0
        if self.max_queue_steps is not None:
            steps = max(self.binner.ready - self.max_queue_steps, 0)
        if self.max_lag_ns is not None:
            steps = max(steps, self.binner.stale_steps(time.time_ns() - self.max_lag_ns))
        if not steps:
            return
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

    def _run_model(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = torch.from_numpy(frames).unsqueeze(1).to(self.device)
        spikes, activity = self.adapter(x)
        self.stats.model_calls += 1
        self.stats.steps += len(frames)
        return spikes, activity

    def _window_first_step(self, step: int) -> int:
        offset = (step - self._window_origin) // self.window_steps * self.window_steps
        return self._window_origin + offset

    def _collect(
        self, batch: StepBatch, spikes: np.ndarray, activity: np.ndarray, now_ns: int
    ) -> list[StreamResult]:
        """Add the steps' outputs to their windows; emit the windows that are complete.

        The window in progress is completed first; whole windows inside the batch are read out
        together (one readout call for all of them).
        """
        n, size = len(batch), self.window_steps
        events_at = np.flatnonzero(batch.events)
        if events_at.size:
            self._last_event_step = batch.first_step + int(events_at[-1])
        results = []
        start = 0
        position = (batch.first_step - self._window_origin) % size
        if position or self._window_spikes:
            start = min(size - position, n)
            self._extend_window(batch, spikes, activity, 0, start)
            if start == size - position:
                arrival = int(batch.arrival_ns[start - 1])
                results.append(self._emit_window(batch.first_step + start - 1, now_ns, arrival))
        whole = (n - start) // size
        if whole:
            stop = start + whole * size
            results += self._emit_whole_windows(batch, spikes, activity, start, stop, now_ns)
            start = stop
        if start < n:
            self._extend_window(batch, spikes, activity, start, n)
        return results

    def _extend_window(
        self, batch: StepBatch, spikes: np.ndarray, activity: np.ndarray, start: int, stop: int
    ) -> None:
        self._window_spikes.append(spikes[start:stop])
        self._window_activity.append(activity[start:stop])
        self._window_events += int(batch.events[start:stop].sum())

    def _emit_window(self, last_step: int, now_ns: int, arrival_ns: int | None) -> StreamResult:
        """The result of the window in progress, whose last step is ``last_step``."""
        first_step = self._window_first_step(last_step)
        spikes = np.concatenate(self._window_spikes)
        activity = np.concatenate(self._window_activity)
        result = self._make_result(
            first_step,
            last_step,
            spikes.sum(axis=0),
            softmax(self.readout(activity[:, None]))[0],
            self._window_events,
            now_ns,
            arrival_ns,
        )
        self._window_spikes.clear()
        self._window_activity.clear()
        self._window_events = 0
        return result

    def _emit_whole_windows(
        self,
        batch: StepBatch,
        spikes: np.ndarray,
        activity: np.ndarray,
        start: int,
        stop: int,
        now_ns: int,
    ) -> list[StreamResult]:
        """Results of the whole windows in batch steps [start, stop), read out at once."""
        size = self.window_steps
        count = (stop - start) // size
        per_window = (count, size, -1)
        counts = spikes[start:stop].reshape(per_window).sum(axis=1)
        windows = activity[start:stop].reshape(per_window).transpose(1, 0, 2)
        probabilities = softmax(self.readout(np.ascontiguousarray(windows)))
        events = batch.events[start:stop].reshape(count, size).sum(axis=1)
        return [
            self._make_result(
                batch.first_step + start + k * size,
                batch.first_step + start + (k + 1) * size - 1,
                counts[k],
                probabilities[k],
                int(events[k]),
                now_ns,
                int(batch.arrival_ns[start + (k + 1) * size - 1]),
            )
            for k in range(count)
        ]

    def _make_result(
        self,
        first: int,
        last: int,
        counts: np.ndarray,
        probabilities: np.ndarray,
        events: int,
        now_ns: int,
        arrival_ns: int | None,
    ) -> StreamResult:
        latency_ms = 0.0 if arrival_ns is None else max(now_ns - arrival_ns, 0) / 1e6
        result = StreamResult(
            step=first,
            t_start_us=self.binner.step_start_us(first),
            t_stop_us=self.binner.step_start_us(last + 1),
            events=events,
            spike_counts=counts,
            probabilities=probabilities,
            label=int(decide(probabilities)),
            latency_ms=latency_ms,
            dropped_events=self._pending_dropped,
            reset=self._window_reset,
        )
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
