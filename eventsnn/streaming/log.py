"""HDF5 log of stream results, flushed regularly and readable even after the writer was killed.

Layout: one chunked, growing compound dataset ``/results`` with a row per result (``step``,
``t_start_us``, ``t_stop_us``, ``events``, ``label``, ``latency_ms``, ``dropped_events``,
``reset``, ``probabilities[K]``, ``spike_counts[K]``) and root attributes ``format``
("eventsnn-stream-log"), ``version`` and ``metadata`` (JSON: source, checkpoint, step, ...).
A clean ``close`` adds a ``summary`` attribute (JSON).

The file is written in HDF5's single-writer/multiple-reader mode (SWMR): every flush leaves it
consistent, so a reader (``read_log``) sees every flushed row while the stream runs, and after a
crash or SIGKILL, without repair.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import h5py
import numpy as np

from eventsnn.streaming.runner import StreamResult
from eventsnn.streaming.sources import StreamError

LOG_FORMAT = "eventsnn-stream-log"
LOG_VERSION = 2
"""2: a label is -1 where classes tie at the top (a silent window); 1: argmax, 0 on ties."""


def result_dtype(n_classes: int) -> np.dtype:
    """The row type of ``/results`` for a model with ``n_classes`` outputs."""
    return np.dtype(
        [
            ("step", "<i8"),
            ("t_start_us", "<i8"),
            ("t_stop_us", "<i8"),
            ("events", "<i8"),
            ("label", "<i4"),
            ("latency_ms", "<f8"),
            ("dropped_events", "<i8"),
            ("reset", "?"),
            ("probabilities", "<f4", (n_classes,)),
            ("spike_counts", "<f4", (n_classes,)),
        ]
    )


class StreamLog:
    """Appends results to an HDF5 log; see the module docstring. Use as a context manager."""

    def __init__(
        self,
        path: str | os.PathLike,
        n_classes: int,
        metadata: dict[str, Any] | None = None,
        flush_every_s: float = 0.5,
        chunk_rows: int = 1024,
    ) -> None:
        self.path = os.fspath(path)
        self.dtype = result_dtype(n_classes)
        self.flush_every_s = flush_every_s
        self._rows: list[tuple] = []
        self._written = 0
        self._last_flush = time.monotonic()
        self.file = h5py.File(self.path, "w", libver="latest")
        self.file.attrs["format"] = LOG_FORMAT
        self.file.attrs["version"] = LOG_VERSION
        self.file.attrs["metadata"] = json.dumps(metadata or {})
        self.file.attrs["summary"] = json.dumps(None)
        self.results = self.file.create_dataset(
            "results", shape=(0,), maxshape=(None,), chunks=(chunk_rows,), dtype=self.dtype
        )
        self.file.swmr_mode = True

    def append(self, result: StreamResult) -> None:
        """Queue a result; rows reach the file at least every ``flush_every_s`` seconds."""
        self._rows.append(
            (
                result.step,
                result.t_start_us,
                result.t_stop_us,
                result.events,
                result.label,
                result.latency_ms,
                result.dropped_events,
                result.reset,
                result.probabilities,
                result.spike_counts,
            )
        )
        if time.monotonic() - self._last_flush >= self.flush_every_s:
            self.flush()

    def flush(self) -> None:
        """Write the queued rows and make them visible to readers (and safe from a kill)."""
        self._last_flush = time.monotonic()
        if not self._rows:
            return
        rows = np.array(self._rows, dtype=self.dtype)
        self.results.resize((self._written + len(rows),))
        self.results[self._written :] = rows
        self._written += len(rows)
        self._rows.clear()
        self.results.flush()

    def close(self, summary: dict[str, Any] | None = None) -> None:
        """Flush, close, and record the run's summary."""
        if not self.file.id.valid:
            return
        self.flush()
        self.file.close()
        if summary is not None:
            with h5py.File(self.path, "r+", libver="latest") as file:
                file.attrs["summary"] = json.dumps(summary)

    def __enter__(self) -> StreamLog:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def read_log(path: str | os.PathLike) -> dict[str, Any]:
    """The rows, metadata and summary of a log, also one whose writer is running or was killed."""
    with h5py.File(path, "r", libver="latest", swmr=True) as file:
        if file.attrs.get("format") != LOG_FORMAT:
            raise StreamError(f"{os.fspath(path)} is not an eventsnn stream log")
        return {
            "results": file["results"][()],
            "metadata": json.loads(file.attrs["metadata"]),
            "summary": json.loads(file.attrs["summary"]),
        }
