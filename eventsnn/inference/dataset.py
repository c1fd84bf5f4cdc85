"""Windows of many recordings as batches: an IterableDataset sharded over ranks and workers.

Each process of a run (rank x data-loader worker) takes every n-th recording, streams it as
windows (`iter_windows`), encodes each window with the training transforms (with `readers`,
in that many background threads reading recordings side by side) and yields batches
``{"x": (T, B, ...) float tensor or None, "windows": per-window int64 columns, "finished": [...]}``.
A recording's record in ``finished`` (path, size, checksum, events, windows, error; for a piece
of a split recording n_events is where its windows end in the file and events_read what it read)
comes with the batch holding its last windows, after all of them. A recording that cannot be
read, is empty or does not fit the model ends with an ``error`` and the others go on.
With `pad_time_steps` (encode-only runs over time windows: `window_time_steps`) every window's
tensor is zero-padded at the end of time to that T, as training's collate pads shorter samples,
so that windows that start late or end a recording early share one shape.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from eventsnn.data.errors import ConfigError
from eventsnn.data.pipeline import Pipeline
from eventsnn.events import EventsError, SensorSize, SensorSizeError, make_events
from eventsnn.inference.background import read_ahead
from eventsnn.inference.results import file_checksum
from eventsnn.inference.windows import Window, WindowConfig, iter_windows

WINDOW_COLUMNS = ("recording", "index", "t_start", "t_stop", "first_event", "n_events")
"""Per-window int64 columns of a batch; ``recording`` is the recording's task index."""
PROBE_SPAN_US = 10**12
"""The longest span (11.6 days) over which count windows are probed for a T set by the span."""
PROBE_EVENTS = 10_000
"""Events of a count-window probe at most (windows of millions of events need no more)."""
FIXED_STEPS_HINT = "give the transform a fixed number of time steps, such as ToFrame's n_time_bins"
"""What to do when windows' encoded tensors differ in their number of time steps (T)."""


def window_time_steps(window: WindowConfig, transforms: Sequence[Callable]) -> int | None:
    """The time steps (T) a window of `window`'s length encodes to at most (encode-only runs
    pad every window to it: one results table holds one shape): T of a probe window with an
    event at its first and last microsecond (transforms such as ToFrame(time_window=...) bin
    from a window's first event to its last, so a window starting late or ending a recording
    early has fewer). Event-count windows have no longest span: None, once probes of one
    count over spans growing tenfold up to `PROBE_SPAN_US` show that T does not depend on
    the span; else ConfigError. (T changes within a tenfold of the span where it first can,
    so the probes stay small.)"""
    if window.by_time:
        return _probe_steps(make_events([0, 0], [0, 0], [0, window.length - 1], [0, 0]), transforms)
    n = window.length
    probe = min(n, PROBE_EVENTS)  # T set by the span shows with fewer events too
    first, zeros = max(probe - 1, 1), np.zeros(probe)
    spans = [first * 10**k for k in range(13) if first * 10**k <= PROBE_SPAN_US]
    steps = None
    for span in spans:
        t = np.round(np.arange(probe) * (span / first))  # float: no int64 overflow
        probed = _probe_steps(make_events(zeros, zeros, t, zeros), transforms)
        if steps is not None and probed != steps:
            raise ConfigError(
                "transform",
                f"windows of {n} events encode to {steps} time steps (T) over {span // 10} us "
                f"and to {probed} over {span} us: --encode-only writes one shape, "
                f"{FIXED_STEPS_HINT}",
            )
        steps = probed
    return None


def _probe_steps(events: np.ndarray, transforms: Sequence[Callable]) -> int:
    """T of the probe `events` encoded. A transform that drops probe events (a denoise,
    refractory or crop filter) is passed over: the probe stands for a span, not for events."""
    for transform in transforms:
        out = transform(events)
        is_events = isinstance(out, np.ndarray) and out.dtype.names is not None
        if not (is_events and len(out) < len(events)):
            events = out
    return len(np.asarray(events))


@dataclass(frozen=True)
class RecordingTask:
    """A recording, or part `part` of `parts` of one, to process: its position in the run's
    plan and its path (see `plan_tasks`)."""

    index: int
    path: str
    part: int = 0
    parts: int = 1


def plan_tasks(paths: Sequence[str], shares: int, split_bytes: int) -> list[RecordingTask]:
    """The run's tasks, dealt to the processes (`shares`: ranks x data-loader workers) in turn.

    Recordings go whole, largest first, except the large ones (`split_bytes` or more) left over
    when those are dealt out evenly: each of these is split into one part a process, else
    every process but one would wait for it (3 long recordings on 2 processes: 1.5 + 1.5, not
    2 + 1). Splitting only these keeps its cost (re-reading a part's edge: ~30 ms a part) to
    where it pays. Every process finds the same plan (`WindowDataModule.plan` sends rank 0's);
    `iter_windows` cuts a part's windows, and a file that cannot be split gives its other parts
    no window. 0 never splits.
    """
    sizes = {path: _size(path) for path in paths}
    by_size = sorted(paths, key=lambda path: -sizes[path])
    split = _to_split(by_size, sizes, shares, split_bytes)
    tasks = [RecordingTask(i, path) for i, path in enumerate(p for p in by_size if p not in split)]
    for path in (path for path in by_size if path in split):  # a part for each process in turn
        tasks += [RecordingTask(len(tasks) + part, path, part, shares) for part in range(shares)]
    return tasks


def _to_split(
    by_size: Sequence[str], sizes: dict[str, int], shares: int, split_bytes: int
) -> set[str]:
    """The large recordings left over when they are dealt whole in turn: the smallest or the
    largest of them, whichever leaves the busiest process less to read (sizes decide, not
    names: of 1000 + 100 + 100 MB on 2 processes the 1000 is split, of 1000 + 900 + 100 the
    100)."""
    if shares < 2 or not split_bytes:
        return set()
    large = [path for path in by_size if sizes[path] >= split_bytes]
    left_over = len(large) % shares
    if not left_over:
        return set()
    choices = (set(large[-left_over:]), set(large[:left_over]))
    return min(choices, key=lambda split: _busiest_load(by_size, sizes, split, shares))


def _busiest_load(
    by_size: Sequence[str], sizes: dict[str, int], split: set[str], shares: int
) -> float:
    """Bytes of the busiest process when `split` is split evenly and the rest dealt in turn."""
    loads = [sum(sizes[path] for path in split) / shares] * shares
    for i, path in enumerate(path for path in by_size if path not in split):
        loads[i % shares] += sizes[path]
    return max(loads)


def _size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except OSError:  # recorded as the recording's error when it is read
        return 0


class WindowDataset(IterableDataset):
    """Batches of encoded windows from this process's share of `tasks` (module docstring)."""

    def __init__(
        self,
        tasks: Sequence[RecordingTask],
        window: WindowConfig,
        transforms: Sequence[Callable],
        sensor_size: SensorSize | None,
        batch_size: int,
        input_shape: Sequence[int] | None = None,
        rank: int = 0,
        world_size: int = 1,
        readers: int = 0,
        pad_time_steps: int | None = None,
    ) -> None:
        super().__init__()
        self.readers = readers
        self.pad_time_steps = pad_time_steps
        self.tasks = list(tasks)
        self.window = window
        self.encode = Pipeline(list(transforms))
        self.sensor_size = sensor_size
        self.batch_size = int(batch_size)
        self.input_shape = None if input_shape is None else tuple(int(s) for s in input_shape)
        self.rank, self.world_size = rank, world_size

    def my_tasks(self) -> list[RecordingTask]:
        """The recordings of this rank and data-loader worker.

        Rank r gets every recording i with i % world_size == r, shared among its workers.
        """
        info = get_worker_info()
        workers, worker = (1, 0) if info is None else (info.num_workers, info.id)
        return self.tasks[worker * self.world_size + self.rank :: self.world_size * workers]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        batch = _BatchBuilder(self.batch_size)
        recordings = (self._recording_items(task) for task in self.my_tasks())
        if self.readers:  # recordings read by threads, two batches ahead of the model
            items = read_ahead(recordings, self.readers, depth=2 * self.batch_size)
        else:
            items = (item for recording in recordings for item in recording)
        for item in items:
            if isinstance(item, dict):
                yield from batch.finish(item)
            else:
                yield from batch.add(*item)
        yield from batch.flush()

    def _recording_items(
        self, task: RecordingTask
    ) -> Iterator[tuple[int, Window, np.ndarray] | dict[str, Any]]:
        """The task's (recording, window, encoded window), then its record, error or not."""
        started = time.perf_counter()
        record: dict[str, Any] = {"recording": task.index, "path": task.path, "error": ""}
        n_events = n_windows = 0
        first_event = None  # a piece of a split recording starts past the file's first event
        try:
            record["size"] = Path(task.path).stat().st_size
            record["checksum"] = file_checksum(task.path)
            windows = iter_windows(
                task.path, self.window, self.sensor_size, part=task.part, parts=task.parts
            )
            for window in windows:
                encoded = self._pad_time(task.path, window, np.asarray(self.encode(window.events)))
                self._check_shape(task.path, encoded)
                n_events = max(n_events, window.first_event + len(window.events))
                first_event = window.first_event if first_event is None else first_event
                n_windows += 1
                yield task.index, window, encoded
            if n_events == 0 and task.part == 0:  # later parts of a recording may hold none
                raise EventsError(f"{task.path}: the recording holds no events")
        except Exception as error:  # a batch job records any failure and goes on
            record["error"] = _message(error, task.path)
            if isinstance(error, SensorSizeError):
                record["error"] += f" (the checkpoint's model takes sensor size {self.sensor_size})"
        record.update(n_events=n_events, n_windows=n_windows, seconds=time.perf_counter() - started)
        record["events_read"] = n_events - (first_event or 0)
        yield record

    def _pad_time(self, path: str, window: Window, encoded: np.ndarray) -> np.ndarray:
        """`encoded` zero-padded at the end of time to `pad_time_steps` (no input events);
        a window encoding to more steps is an error: its transform's T depends on more than the
        window's length (say, on its event count), and one results file holds one shape."""
        if self.pad_time_steps is None or len(encoded) == self.pad_time_steps:
            return encoded
        if len(encoded) > self.pad_time_steps:
            raise EventsError(
                f"{path}: window {window.index} encodes to {len(encoded)} time steps (T), more "
                f"than the {self.pad_time_steps} of a window spanning {self.window.length} us "
                f"that the others are padded to: {FIXED_STEPS_HINT}"
            )
        missing = self.pad_time_steps - len(encoded)
        return np.pad(encoded, [(0, missing)] + [(0, 0)] * (encoded.ndim - 1))

    def _check_shape(self, path: str, encoded: np.ndarray) -> None:
        if self.input_shape is not None and encoded.shape[1:] != self.input_shape:
            raise EventsError(
                f"{path}: encoded windows have shape {encoded.shape} (T, ...), the model takes "
                f"{self.input_shape} per time step: does the sensor size match the checkpoint's?"
            )


def _message(error: Exception, path: str) -> str:
    """One line for an error that names the recording's `path`: project errors as they are,
    others with their type."""
    message = str(error)
    if not isinstance(error, ValueError | OSError):
        message = f"{type(error).__name__}: {message}"
    return message if path in message else f"{path}: {message}"


class _BatchBuilder:
    """Collects windows of equal shape into batches and attaches finished-recording records."""

    def __init__(self, batch_size: int) -> None:
        self.batch_size = batch_size
        self.arrays: list[np.ndarray] = []
        self.columns: list[tuple[int, ...]] = []
        self.finished: list[dict[str, Any]] = []

    def add(self, recording: int, window: Window, encoded: np.ndarray) -> Iterator[dict[str, Any]]:
        """Add a window; yields the current batch first when it is full or shapes differ."""
        if self.arrays and (
            len(self.arrays) == self.batch_size or self.arrays[0].shape != encoded.shape
        ):
            yield from self.flush()
        self.arrays.append(encoded)
        self.columns.append(
            (
                recording,
                window.index,
                window.t_start,
                window.t_stop,
                window.first_event,
                len(window.events),
            )
        )

    def finish(self, record: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """A recording ended: its record rides with the batch holding its last windows, or
        goes at once in a batch of its own when none of its windows waits (it failed before
        any, or they have gone): records must not wait for other recordings' windows, which
        may be long in coming (a kill would lose them, and their count would grow)."""
        if any(columns[0] == record["recording"] for columns in self.columns):
            self.finished.append(record)
        else:
            yield _batch([], [], [record])

    def flush(self) -> Iterator[dict[str, Any]]:
        """Yield the pending batch, if it holds any window or record."""
        if self.arrays or self.finished:
            yield _batch(self.arrays, self.columns, self.finished)
        self.arrays, self.columns, self.finished = [], [], []


def _batch(
    arrays: list[np.ndarray], columns: list[tuple[int, ...]], finished: list[dict[str, Any]]
) -> dict[str, Any]:
    """A batch as the predictor takes it: windows stacked on axis 1 (None without any)."""
    x = None
    if arrays:
        x = torch.from_numpy(np.stack(arrays, axis=1).astype(np.float32, copy=False))
    table = np.array(columns, dtype=np.int64).reshape(-1, len(WINDOW_COLUMNS))
    windows = {name: torch.from_numpy(table[:, i].copy()) for i, name in enumerate(WINDOW_COLUMNS)}
    return {"x": x, "windows": windows, "finished": finished}


class WindowDataModule(pl.LightningDataModule):
    """The predict loader: a `WindowDataset` for this rank (known only once the trainer runs).

    `paths` are planned into tasks (`plan_tasks`) once the number of processes is known.
    """

    def __init__(
        self,
        paths: Sequence[str],
        num_workers: int = 0,
        split_bytes: int = 0,
        **dataset_options: Any,
    ) -> None:
        super().__init__()
        self.paths = list(paths)
        self.num_workers = num_workers
        self.split_bytes = split_bytes
        self.dataset_options = dataset_options
        self._plan: list[RecordingTask] | None = None

    def plan(self) -> list[RecordingTask]:
        """The run's tasks for the trainer's processes: rank 0's plan, sent to every rank (the
        first call is collective: every rank makes it in the writer's `setup`)."""
        if self._plan is None:
            shares = self.trainer.world_size * max(1, self.num_workers)
            plan = plan_tasks(self.paths, shares, self.split_bytes)
            # rank 0's: a file growing, or a stat failing in one rank only, must not make
            # the ranks' plans differ (a recording would be skipped or done twice)
            self._plan = self.trainer.strategy.broadcast(plan, src=0)
        return self._plan

    def predict_dataloader(self) -> DataLoader:
        """Batches are made by the dataset itself (batch_size=None)."""
        dataset = WindowDataset(
            tasks=self.plan(),
            **self.dataset_options,
            rank=self.trainer.global_rank,
            world_size=self.trainer.world_size,
        )
        return DataLoader(
            dataset,
            batch_size=None,
            num_workers=self.num_workers,
            worker_init_fn=_leave_sigterm_to_the_main_process if self.num_workers else None,
        )


def _leave_sigterm_to_the_main_process(worker: int) -> None:
    """Data-loader workers ignore SIGTERM, which the main process handles by stopping them: a
    SIGTERM to the whole process group (SLURM's scancel, kill -- -PGID) would otherwise kill
    them, and torch would raise "DataLoader worker killed" at any moment, even mid-merge."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
