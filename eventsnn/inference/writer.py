"""`ResultsWriter`: the prediction writer that stores each rank's results, then merges on rank 0.

Every batch's window rows go to their recording's `RecordingPart`; the recordings whose record
arrives with a batch are finished, and the finished ones are committed together in one part file
once `commit_seconds` have passed since the last commit (and at the end, or when interrupted):
everything committed survives a kill, and a kill loses at most that much finished work (redone
by the next run). Fewer, larger part files make a run over thousands of small recordings cheaper
to write and to merge (a part file costs a few ms either way); the progress bar counts finished
recordings.
At the end all ranks meet, telling each other whether their last commit worked, and rank 0 merges
the parts into the output file; they meet again to learn whether the merge worked. A rank that
failed (e.g. a full disk) thus fails every rank at once, instead of leaving the others to wait
for it at a barrier (until the backend notices it gone, or the process group's timeout): each
raises the same `OSError`, naming the rank and its error. After a failed commit rank 0 still
merges what was committed (marked incomplete, as after an interruption); after a failed merge
the parts stay for the next run.
With a forking strategy the ranks are children of the command's process, which gets no callback
but ``on_exception`` (their state does not come back to it); there it stops the ranks (SIGINT,
or SIGTERM when that stopped it) and waits for them to exit, then merges only what rank 0 left
unmerged (a lock serialises merges of an output: `eventsnn.inference.merge`): with no part file
left, the output stays as rank 0 wrote it. One output is for one run at a time.
Rank 0 shows a progress bar over the run's recordings (every rank's: `OtherRanks` reads the
others' part files) with windows and events per second.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import BasePredictionWriter
from pytorch_lightning.utilities.exceptions import SIGTERMException
from tqdm.auto import tqdm

from eventsnn.inference.dataset import FIXED_STEPS_HINT, RecordingTask
from eventsnn.inference.merge import merge
from eventsnn.inference.parts import RecordingPart, commit_parts
from eventsnn.inference.progress import Done, OtherRanks
from eventsnn.inference.results import parts_dir

COMMIT_BYTES = 2**26
"""Finished rows held for a commit at most (encoded windows are large): past it, commit now."""
RANKS_GRACE_SECONDS = 30.0
"""How long an interrupted launcher waits for the ranks it forked to stop before killing them."""
PROGRESS_SECONDS = 0.5
"""How often rank 0 looks for the other ranks' new part files, at most; and at most 2% of its
time (a look lists the part files: ~20 ms for 40k of them, hours of a run)."""
OUTPUT_KEYS = ("probabilities", "predicted", "spike_counts", "firing_rates", "encoded")
"""Per-window outputs of `WindowPredictor` stored as datasets."""


class ResultsWriter(BasePredictionWriter):
    """Writes per-rank part files and merges them on rank 0 (module docstring)."""

    def __init__(
        self,
        output: str | os.PathLike,
        metadata: Mapping[str, Any],
        progress: bool = True,
        commit_seconds: float = 1.0,
    ) -> None:
        super().__init__(write_interval="batch")
        self.output = Path(output)
        self.commit_seconds = commit_seconds
        self.finished: list[RecordingPart] = []
        self.finished_bytes = 0
        self.kinds: dict[str, tuple[np.dtype, tuple[int, ...]]] = {}
        self.last_commit = time.perf_counter()
        self.tasks: dict[int, RecordingTask] = {}
        self.metadata = dict(metadata)
        self.progress = progress
        self.open: dict[int, RecordingPart] = {}
        self.events_done = 0
        self.windows_done = 0
        self.started = time.perf_counter()
        self.folder = parts_dir(self.output)
        self.bar: tqdm | None = None
        self.others: OtherRanks | None = None
        self.others_read = self.others_every = 0.0
        self.rank = 0
        self.merge_tried = False
        self.ended = False
        self.interrupted = False  # by Ctrl-C: the command reports it (Lightning exits 1)

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """This rank's parts folder and progress bar (rank 0 only)."""
        self.rank = trainer.global_rank
        self.folder = parts_dir(self.output) / f"rank-{self.rank}"
        self.folder.mkdir(parents=True, exist_ok=True)
        plan = trainer.datamodule.plan()  # the WindowDataModule's tasks
        self.tasks = {task.index: task for task in plan}
        shown = self.progress and trainer.is_global_zero
        if shown and trainer.world_size > 1:
            self.others = OtherRanks(parts_dir(self.output), self.folder)
        self.bar = tqdm(
            total=len(plan),
            unit="rec",
            desc="recordings",
            dynamic_ncols=True,
            disable=not shown,
        )
        self.started = time.perf_counter()

    def write_on_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        prediction: dict[str, Any],
        batch_indices: Sequence[int] | None,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        """Append the batch's windows to their recordings; finish the recordings that ended."""
        windows = {name: column.cpu().numpy() for name, column in prediction["windows"].items()}
        outputs = {k: prediction[k].cpu().numpy() for k in OUTPUT_KEYS if k in prediction}
        recordings = windows.pop("recording")
        for index in dict.fromkeys(recordings.tolist()):
            rows = recordings == index
            columns = {name: values[rows] for name, values in {**windows, **outputs}.items()}
            part = self._part(index)
            mismatch = self._mismatch(columns)
            if mismatch:  # e.g. encoded frames sized by each window's events: no common table
                part.reject(f"{part.record['path']}: {mismatch}")
            part.append(columns)
        self.windows_done += len(recordings)
        layer_names = list(getattr(pl_module, "layer_names", []))
        for record in prediction["finished"]:
            part = self._part(record["recording"])
            del self.open[record["recording"]]
            if not part.finish(record, layer_names):  # else committed already: its own file
                self.finished.append(part)
                self.finished_bytes += part.buffered_bytes
            self.events_done += int(record.get("events_read", record["n_events"]))
        due = time.perf_counter() - self.last_commit >= self.commit_seconds
        if due or self.finished_bytes > COMMIT_BYTES:
            self._commit()
        self._show(len(prediction["finished"]))

    def _mismatch(self, columns: Mapping[str, np.ndarray]) -> str:
        """Why rows cannot join the run's table (their shape differs from the first rows'), or
        ""."""
        for name, rows in columns.items():
            kind = (rows.dtype, rows.shape[1:])
            first = self.kinds.setdefault(name, kind)
            if kind != first:
                return (
                    f"its {name} rows are {kind[0]} {list(kind[1])}, the run's {first[0]} "
                    f"{list(first[1])}: one results file holds one shape"
                    f"{_shape_hint(name, kind[1], first[1])}"
                )
        return ""

    def _commit(self) -> None:
        """Write the finished recordings not yet on disk into one part file."""
        finished, self.finished, self.finished_bytes = self.finished, [], 0
        if finished:  # taken off first: a failed commit is not retried on the way out
            commit_parts(self.folder, finished)
        self.last_commit = time.perf_counter()

    def _part(self, index: int) -> RecordingPart:
        if index not in self.open:
            task = self.tasks[index]
            self.open[index] = RecordingPart(
                self.folder,
                task.path,
                self.rank,
                part=task.part,
                parts=task.parts,
                job=str(self.metadata.get("job", "")),
            )
        return self.open[index]

    def _show(self, finished: int, last: bool = False) -> None:
        """Move the bar by this rank's `finished` recordings and those the other ranks
        committed since it last looked (every `PROGRESS_SECONDS`, and at the `last` call)."""
        if self.bar is None or self.bar.disable:
            return
        now = time.perf_counter()
        others = Done() if self.others is None else self.others.done
        if self.others is not None and (last or now - self.others_read >= self.others_every):
            finished += self.others.update()
            self.others_read = time.perf_counter()
            self.others_every = max(PROGRESS_SECONDS, 50 * (self.others_read - now))
        seconds = max(now - self.started, 1e-9)
        events, windows = self.events_done + others.events, self.windows_done + others.windows
        self.bar.set_postfix(windows=windows, ev_s=f"{events / seconds:.3g}", refresh=False)
        self.bar.update(finished)

    def on_predict_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Commit, meet every rank, merge on rank 0, meet again; a rank's failure to commit or
        rank 0's to merge is raised on every rank (module docstring)."""
        commit_error = _attempt(self._end)
        failed = _failures(trainer, commit_error, "committing finished recordings")
        self._close_bar()  # every rank has committed: the bar counts all their work
        merge_error = None
        if trainer.is_global_zero:
            merge_error = _attempt(lambda: self._merge(complete=not failed))
            self.merge_tried = True  # an exchange failing next must not merge it over again
        unmerged = _failures(trainer, merge_error, f"merging the parts into {self.output}")
        self.ended = True
        if failed or unmerged:
            left = f"{self.output} holds what was committed (marked incomplete): run again"
            if unmerged:
                left = "the parts stay for the next run to merge"
            raise OSError("; ".join([*failed, *unmerged, left])) from commit_error or merge_error

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        """Interrupted (Ctrl-C, SIGTERM) or failed: commit the finished recordings; rank 0 merges
        the recordings committed so far, unless it already tried its end-of-run merge.

        A process that launched ranks (e.g. forked them: ``ddp_fork``) stops them first, else
        they would go on to the end while it waits to exit (`_stop_ranks`). After
        ``on_predict_end``'s own failure there is nothing left to do: every rank knows it, and
        rank 0 tried its merge.
        """
        self.interrupted = isinstance(exception, KeyboardInterrupt)
        if self.ended:
            return
        if threading.current_thread() is threading.main_thread():
            # a later SIGTERM (a scheduler's second, or the group's after Ctrl-C) must not cut
            # the commit and merge short; the command puts its handler back after the run
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            self._end()
        finally:
            self._close_bar()
        if trainer.strategy.launcher is not None:
            terminated = isinstance(exception, SIGTERMException)
            _stop_ranks(trainer.strategy.launcher, signal.SIGTERM if terminated else signal.SIGINT)
        if trainer.is_global_zero and not self.merge_tried:
            self._merge(complete=False)

    def _end(self) -> None:
        """Commit the finished recordings; close the unfinished recordings' files (even if
        the commit failed)."""
        try:
            self._commit()
        finally:
            self._close()

    def _close_bar(self) -> None:
        if self.bar is not None:
            self._show(0, last=True)
            self.bar.close()

    def _close(self) -> None:
        for part in self.open.values():
            part.abandon()
        self.open.clear()

    def _merge(self, complete: bool) -> None:
        seconds = time.time() - float(self.metadata.get("started_unix", time.time()))
        timing = {"seconds": seconds, "predict_seconds": time.perf_counter() - self.started}
        merge(self.output, {**self.metadata, **timing, "complete": complete}, complete)


def _shape_hint(name: str, shape: tuple[int, ...], first: tuple[int, ...]) -> str:
    """What to do when rows of `shape` differ from the run's `first` shape: encoded windows' first
    axis is their time steps (T), which the transform sets; the sensor size sets the others."""
    steps = 1 if name == "encoded" else 0
    if shape[steps:] != first[steps:]:
        return " (give the transform a fixed sensor size)"
    if shape != first:
        return f"; the number of time steps (T) differs: {FIXED_STEPS_HINT}"
    return ""


def _stop_ranks(launcher: Any, signum: int) -> None:
    """Send `signum` (the signal that stopped this process: SIGTERM, else SIGINT as Ctrl-C) to the
    ranks `launcher` started and wait for those it forked or spawned to exit, killing any still
    there after RANKS_GRACE_SECONDS: none is left behind, none commits after the merge."""
    launcher.kill(signum)
    deadline = time.monotonic() + RANKS_GRACE_SECONDS
    for process in getattr(launcher, "procs", []):
        if isinstance(process, BaseProcess):  # (`ddp` starts interpreters: Popen, not waited)
            process.join(max(deadline - time.monotonic(), 0.0))
            if process.is_alive():
                process.kill()
                process.join()


def _attempt(step: Callable[[], object]) -> Exception | None:
    """Run `step`; the error it raised, or None (told to the other ranks before it is raised)."""
    try:
        step()
    except Exception as error:  # whatever it is, the other ranks must not wait for this one
        return error
    return None


def _failures(trainer: pl.Trainer, error: Exception | None, step: str) -> list[str]:
    """Every rank's outcome of `step` (this rank's `error`, or None) exchanged, all ranks
    meeting here: ["<step> failed on rank <r> (<its error>)"] for the first failed rank, or []."""
    strategy = trainer.strategy
    flags = torch.zeros(trainer.world_size, device=strategy.root_device)
    flags[trainer.global_rank] = error is not None
    failed = strategy.reduce(flags, reduce_op="sum").nonzero().flatten().tolist()
    if not failed:
        return []
    mine = "" if error is None else f"{type(error).__name__}: {error}"
    why = strategy.broadcast(mine, src=failed[0])
    more = f" and {len(failed) - 1} more" if len(failed) > 1 else ""
    return [f"{step} failed on rank {failed[0]}{more} ({why})"]
