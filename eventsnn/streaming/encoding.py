"""The stream's encoding from the training recipe stored in a checkpoint.

A checkpoint written by ``eventsnn fit`` keeps the data module's hyper-parameters, whose
``transform`` list names the encoding (``{"class_path": ..., "init_args": {...}}`` entries). The
stream reproduces it: ``ToFrame(time_window=...)`` gives the step, and the per-event transforms
before it (``Downsample``, ``MergePolarities``, ``CenterCrop``) become the runner's event filter.
Only those classes of ``eventsnn.encoding.transforms`` are built (a checkpoint never names code to
import); anything else is reported, not applied. Training with ``n_time_bins`` (a fixed number of
bins per recording) has no fixed step: the caller must choose one.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from eventsnn.encoding import transforms

TRANSFORMS_PATH = "eventsnn.encoding.transforms."
PER_EVENT = ("Downsample", "MergePolarities", "CenterCrop")
"""Transforms that treat each event on its own, so any chunking gives the same result."""


@dataclass
class StreamEncoding:
    """What the stream can take over from the training encoding."""

    step_us: int | None = None
    """ToFrame's time_window, when training used one."""
    frame_size: tuple[int, int, int] | None = None
    """ToFrame's sensor size: the frames the network takes."""
    event_filter: Callable[[np.ndarray], np.ndarray] | None = None
    notes: list[str] = field(default_factory=list)
    """What could not be carried over, for the user."""
    step_note: str | None = None
    """Why there is no ``step_us`` (training binned per recording), for a user who gave none."""


def _compose(filters: list[Callable[[np.ndarray], np.ndarray]]) -> Callable | None:
    if not filters:
        return None
    if len(filters) == 1:
        return filters[0]

    def apply(events: np.ndarray) -> np.ndarray:
        for event_filter in filters:
            events = event_filter(events)
        return events

    return apply


def _as_tuple(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def encoding_from_hparams(datamodule_hparams: Mapping[str, Any] | None) -> StreamEncoding:
    """The stream encoding of a data module's hyper-parameters (see the module docstring)."""
    encoding = StreamEncoding()
    specs = list((datamodule_hparams or {}).get("transform") or [])
    if not specs:
        encoding.notes.append("the checkpoint names no training encoding")
        return encoding
    filters = []
    for spec in specs:
        class_path = spec.get("class_path", "") if isinstance(spec, Mapping) else ""
        name = class_path.removeprefix(TRANSFORMS_PATH)
        args = {k: _as_tuple(v) for k, v in (spec.get("init_args") or {}).items()}
        if name == "ToFrame":
            encoding.frame_size = args.get("sensor_size")
            if args.get("time_window"):
                encoding.step_us = int(args["time_window"])
            else:
                bins = {k: args.get(k) for k in ("n_time_bins", "event_count", "n_event_bins")}
                chosen = {k: v for k, v in bins.items() if v}
                encoding.step_note = (
                    f"training used ToFrame({', '.join(f'{k}={v}' for k, v in chosen.items())}), "
                    "not a fixed time window: choose the stream's step (--step-us)"
                )
            break
        if class_path.startswith(TRANSFORMS_PATH) and name in PER_EVENT:
            filters.append(getattr(transforms, name)(**args))
        else:
            encoding.notes.append(f"training transform {class_path or spec!r} is not applied")
    else:
        encoding.notes.append("the training encoding has no ToFrame")
    encoding.event_filter = _compose(filters)
    return encoding


DATA_HPARAMS_KEY = "datamodule_hyper_parameters"


def encoding_from_checkpoint(path: str | os.PathLike) -> StreamEncoding:
    """The stream encoding of the recipe stored in an HDF5 checkpoint (reads nothing else)."""
    from eventsnn.checkpoint import read_checkpoint

    hparams = read_checkpoint(path, keys=[DATA_HPARAMS_KEY]).get(DATA_HPARAMS_KEY)
    return encoding_from_hparams(hparams)
