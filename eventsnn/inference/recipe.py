"""What a batch run needs from the checkpoint besides the model: transforms, windows, sensor size.

A checkpoint written by the training CLI stores the data module's hyper-parameters
(``datamodule_hyper_parameters``): its ``transform`` list (``class_path`` / ``init_args`` dicts,
as in the recipe) and the dataset, whose sample duration is the default window. Only classes under
``eventsnn.`` or ``tonic.transforms`` are imported (importing runs code), as in `load_model`.
"""

from __future__ import annotations

import importlib
import inspect
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from eventsnn.checkpoint import read_checkpoint
from eventsnn.data.errors import ConfigError
from eventsnn.data.registry import DATASETS
from eventsnn.events import SensorSize, as_sensor_size
from eventsnn.inference.windows import WindowConfig

DATA_HPARAMS_KEY = "datamodule_hyper_parameters"
TRUSTED_TRANSFORM_PREFIXES = ("eventsnn.", "tonic.transforms.")


@dataclass(frozen=True)
class DataRecipe:
    """Transforms (and their specs), window and sensor size: recordings encoded as in training."""

    transforms: list[Callable[[np.ndarray], Any]]
    transform_specs: list[dict[str, Any]]
    window: WindowConfig
    sensor_size: SensorSize | None


def read_data_hparams(checkpoint: str | os.PathLike) -> dict[str, Any]:
    """The data module's hyper-parameters stored in a checkpoint ({} when it has none)."""
    return dict(read_checkpoint(checkpoint).get(DATA_HPARAMS_KEY) or {})


def data_recipe(
    data_hparams: Mapping[str, Any],
    source: str,
    transform_specs: Sequence[Mapping[str, Any]] | None = None,
    window: WindowConfig | None = None,
    input_shape: Sequence[int] | None = None,
) -> DataRecipe:
    """The recipe from the checkpoint's data hyper-parameters, with the given overrides.

    `source` names the checkpoint in errors; `input_shape` (C, H, W) of the model gives the
    sensor size when no transform declares one.
    """
    specs = transform_specs if transform_specs is not None else data_hparams.get("transform")
    if not specs:
        raise ConfigError(
            "transform",
            f"{source} stores no data transforms ({DATA_HPARAMS_KEY}/transform); "
            "give `transform:` in the batch config",
        )
    transforms = build_transforms(specs, source)
    window = window or training_window(data_hparams)
    if window is None:
        raise ConfigError(
            "window_us",
            f"{source} does not say how long the training samples were; give --window-us or "
            "--window-events",
        )
    return DataRecipe(
        transforms, [dict(s) for s in specs], window, _sensor_size(transforms, input_shape)
    )


def build_transforms(specs: Sequence[Mapping[str, Any]], source: str) -> list[Callable]:
    """Instantiate ``{class_path, init_args}`` specs (the recipe's form) into transforms."""
    return [_instantiate(spec, f"{source}: transform[{i}]") for i, spec in enumerate(specs)]


def training_window(data_hparams: Mapping[str, Any]) -> WindowConfig | None:
    """The training samples' duration as a time window: the dataset option or its default."""
    options = data_hparams.get("dataset_options") or {}
    duration = options.get("duration_us")
    entry = DATASETS.get(str(data_hparams.get("dataset")))
    if duration is None and entry is not None and hasattr(entry, "import_path"):
        default = inspect.signature(entry.cls).parameters.get("duration_us")
        duration = None if default is None else default.default
    return None if duration in (None, inspect.Parameter.empty) else WindowConfig(int(duration))


def _instantiate(spec: Mapping[str, Any], where: str) -> Callable:
    if not isinstance(spec, Mapping) or not isinstance(spec.get("class_path"), str):
        raise ConfigError(where, f"expected {{class_path: ..., init_args: {{...}}}}, got {spec!r}")
    name = spec["class_path"]
    if not name.startswith(TRUSTED_TRANSFORM_PREFIXES):
        raise ConfigError(
            where, f"{name!r} is not under {TRUSTED_TRANSFORM_PREFIXES}; refusing to import it"
        )
    module_name, _, attribute = name.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as error:
        raise ConfigError(where, f"{name!r} cannot be found") from error
    arguments = {key: _plain(key, value) for key, value in (spec.get("init_args") or {}).items()}
    try:
        return cls(**arguments)
    except (TypeError, ValueError) as error:
        raise ConfigError(where, f"{name}: {error}") from error


def _plain(key: str, value: Any) -> Any:
    """A stored init argument as the class takes it: lists as tuples, dtype names as dtypes."""
    if isinstance(value, list):
        return tuple(value)
    if key == "dtype" and isinstance(value, str):
        return np.dtype(value.removeprefix("numpy.")).type
    return value


def _sensor_size(
    transforms: Sequence[Callable], input_shape: Sequence[int] | None
) -> SensorSize | None:
    """The first declared transform sensor size, else the model's (C, H, W) input as (W, H, C)."""
    for transform in transforms:
        declared = getattr(transform, "sensor_size", None)
        if declared is not None:
            return as_sensor_size(declared)
    if input_shape is not None and len(input_shape) == 3:
        channels, height, width = (int(s) for s in input_shape)
        return (width, height, channels)
    return None
