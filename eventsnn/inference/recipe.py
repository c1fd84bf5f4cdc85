"""What a batch run needs from the checkpoint besides the model: transforms, windows, sensor size.

A checkpoint written by the training CLI stores the data module's hyper-parameters
(``datamodule_hyper_parameters``): its ``transform`` list (``class_path`` / ``init_args`` dicts,
as in the recipe) and the dataset, whose sample duration is the default window. Only classes under
``eventsnn.`` or ``tonic.transforms`` are imported (importing runs code), as in `load_model`.
The recipe keeps its specs in `canonical_specs` form, every argument written out, so that a run's
results record the transforms in full and equivalent specs written differently compare equal.
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
    """Transforms (and their specs, in `canonical_specs` form), window and sensor size: recordings
    encoded as in training."""

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
    specs = canonical_specs(specs, source)
    transforms = build_transforms(specs, source)
    window = window or training_window(data_hparams)
    if window is None:
        raise ConfigError(
            "window_us",
            f"{source} does not say how long the training samples were; give --window-us or "
            "--window-events",
        )
    return DataRecipe(transforms, specs, window, _sensor_size(transforms, input_shape))


def build_transforms(specs: Sequence[Mapping[str, Any]], source: str) -> list[Callable]:
    """Instantiate ``{class_path, init_args}`` specs (the recipe's form) into transforms."""
    return [_instantiate(spec, f"{source}: transform[{i}]") for i, spec in enumerate(specs)]


def canonical_specs(specs: Sequence[Mapping[str, Any]], source: str) -> list[dict[str, Any]]:
    """The specs in one written form, so that specs differing only in how they are written
    compare equal as JSON: each class by its own path (not a re-export's), every init argument
    given (defaults too), values as plain JSON (lists, dtype names such as "float32", Python
    numbers)."""
    return [canonical_spec(spec, f"{source}: transform[{i}]") for i, spec in enumerate(specs)]


def canonical_spec(spec: Any, where: str = "transform") -> dict[str, Any]:
    """One spec in `canonical_specs` form; ConfigError (naming `where`) when it does not name a
    trusted class or its arguments do not fit the class's signature."""
    cls, arguments = _resolve(spec, where)
    try:
        bound = inspect.signature(cls).bind(**arguments)
    except (TypeError, ValueError) as error:
        raise ConfigError(where, f"{spec['class_path']}: {error}") from error
    bound.apply_defaults()
    init_args: dict[str, Any] = {}
    for name, value in bound.arguments.items():
        kind = bound.signature.parameters[name].kind
        if kind is inspect.Parameter.VAR_KEYWORD:
            init_args.update(value)
        elif kind is not inspect.Parameter.VAR_POSITIONAL:  # () once defaults are applied
            init_args[name] = value
    return {"class_path": _own_path(cls, spec["class_path"]), "init_args": _json(init_args)}


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
    cls, arguments = _resolve(spec, where)
    try:
        return cls(**arguments)
    except (TypeError, ValueError) as error:
        raise ConfigError(where, f"{spec['class_path']}: {error}") from error


def _resolve(spec: Any, where: str) -> tuple[Callable, dict[str, Any]]:
    """The trusted class a ``{class_path, init_args}`` spec names and its arguments as the
    class takes them (`_plain`)."""
    if (
        not isinstance(spec, Mapping)
        or not isinstance(spec.get("class_path"), str)
        or not isinstance(spec.get("init_args") or {}, Mapping)
    ):
        raise ConfigError(where, f"expected {{class_path: ..., init_args: {{...}}}}, got {spec!r}")
    name = spec["class_path"]
    cls = _trusted_class(name, where)
    try:
        arguments = {
            key: _plain(key, value) for key, value in (spec.get("init_args") or {}).items()
        }
    except TypeError as error:  # a dtype numpy does not know
        raise ConfigError(where, f"{name}: {error}") from error
    return cls, arguments


def _trusted_class(name: str, where: str) -> Callable:
    """The object at the dotted path `name`, imported only under a trusted prefix."""
    if not name.startswith(TRUSTED_TRANSFORM_PREFIXES):
        raise ConfigError(
            where, f"{name!r} is not under {TRUSTED_TRANSFORM_PREFIXES}; refusing to import it"
        )
    module_name, _, attribute = name.rpartition(".")
    try:
        return getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as error:
        raise ConfigError(where, f"{name!r} cannot be found") from error


def _own_path(cls: Callable, given: str) -> str:
    """The class's own path (``module.qualname``) when it is trusted and leads back to it, else
    the path it was `given` by."""
    own = f"{getattr(cls, '__module__', '')}.{getattr(cls, '__qualname__', '')}"
    try:
        return own if _trusted_class(own, own) is cls else given
    except ConfigError:
        return given


def _plain(key: str, value: Any) -> Any:
    """A stored init argument as the class takes it: lists as tuples, dtype names as dtypes."""
    if isinstance(value, list):
        return tuple(value)
    if key == "dtype" and isinstance(value, str):
        return np.dtype(value.removeprefix("numpy.")).type
    return value


def _json(value: Any) -> Any:
    """An init argument as JSON holds it: tuples as lists, numpy dtypes and scalar types by
    name ("float32"), numpy scalars as Python numbers, whole floats as ints (1000.0 and 1000
    are one value, as in `eventsnn.data.cache.describe`)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, Mapping):
        return {key: _json(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_json(item) for item in value]
    if isinstance(value, np.dtype) or (isinstance(value, type) and issubclass(value, np.generic)):
        return np.dtype(value).name
    if isinstance(value, np.generic):
        return _json(value.item())
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
