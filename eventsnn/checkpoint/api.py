"""Plain checkpoint API: save a module, rebuild it from the file alone, inspect a file.

:func:`load_model` imports the class named in the file only if it lives under ``eventsnn.`` or is
passed in `allowed_classes` (importing a module runs its code), and calls it with the stored
hyper-parameters, so a file can neither run code nor pass arguments the class does not take.
"""

from __future__ import annotations

import importlib
import inspect
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import h5py
import pytorch_lightning as pl
import torch

import eventsnn.nn
from eventsnn.checkpoint.errors import CheckpointError
from eventsnn.checkpoint.format import dict_keys, encode_name
from eventsnn.checkpoint.io import (
    HPARAMS_KEY,
    MODEL_CLASS_KEY,
    TREE_GROUP,
    open_checkpoint,
    read_checkpoint,
    write_checkpoint,
)
from eventsnn.checkpoint.plugin import class_path

STATE_DICT_KEY = "state_dict"
NEURON_STATES_KEY = "neuron_states"
TRUSTED_PREFIX = "eventsnn."
# keys LightningCLI adds to hyper-parameters for its own instantiator, which load_model never uses
_CLI_HPARAMS = ("_instantiator", "_class_path")


def save(model: pl.LightningModule, path: str | os.PathLike, states: bool = True) -> None:
    """Write the module's class path, hyper-parameters and weights (and neuron states) to `path`.

    With `states`, the spiking neurons' current states (``eventsnn.nn.get_states``) are saved
    too, so that a stream can continue where it stopped.
    """
    checkpoint: dict[str, Any] = {
        "pytorch-lightning_version": pl.__version__,
        MODEL_CLASS_KEY: class_path(type(model)),
        HPARAMS_KEY: dict(model.hparams),
        STATE_DICT_KEY: model.state_dict(),
    }
    if states:
        checkpoint[NEURON_STATES_KEY] = eventsnn.nn.get_states(model)
    write_checkpoint(path, checkpoint)


def load_model(
    path: str | os.PathLike,
    map_location: torch.device | str | None = None,
    allowed_classes: Iterable[type[pl.LightningModule]] = (),
) -> pl.LightningModule:
    """Rebuild the LightningModule stored in `path`: its class, hyper-parameters, weights, states.

    The class (``model_class``, else LightningCLI's ``_class_path`` hyper-parameter) must be a
    LightningModule under ``eventsnn.`` or one of `allowed_classes`. The module is returned in
    eval mode on `map_location` (CPU when None).
    """
    checkpoint = read_checkpoint(path, device=map_location)
    hparams = checkpoint.get(HPARAMS_KEY, {})
    if not isinstance(hparams, Mapping):
        raise CheckpointError(f"{path}: {HPARAMS_KEY} is a {type(hparams).__name__}, not a dict")
    # LightningCLI records the class too, which covers weights-only saves (no callback hooks)
    name = checkpoint.get(MODEL_CLASS_KEY, hparams.get("_class_path"))
    cls = _model_class(name, path, allowed_classes)
    model = cls(**_init_arguments(cls, hparams, path))
    _restore(model, checkpoint, path, states=True)
    return model.to(map_location or "cpu").eval()


def load_weights(model: torch.nn.Module, path: str | os.PathLike, states: bool = True) -> None:
    """Load the weights (and, with `states`, neuron states) of `path` into an existing model.

    Everything is checked before anything is copied: on a CheckpointError the model is unchanged.
    """
    device = next(model.parameters(), torch.empty(0)).device
    _restore(model, read_checkpoint(path, device=device), path, states)


def check_state_dict(
    model: torch.nn.Module, state_dict: Mapping[str, Any], source: str | os.PathLike
) -> None:
    """Raise CheckpointError naming `source` and the key if `state_dict` does not fit `model`.

    Call it before ``load_state_dict`` (e.g. in ``LightningModule.on_load_checkpoint``): torch
    copies the matching tensors before it reports the others, leaving a half-loaded model.
    """
    expected = model.state_dict()
    for key, tensor in expected.items():
        if key not in state_dict:
            raise CheckpointError(f"{source}: tensor {STATE_DICT_KEY}/{key} is missing")
        found = state_dict[key]
        if not isinstance(found, torch.Tensor) or found.shape != tensor.shape:
            shape = tuple(found.shape) if isinstance(found, torch.Tensor) else type(found).__name__
            raise CheckpointError(
                f"{source}: tensor {STATE_DICT_KEY}/{key} has shape {shape}, "
                f"the model expects {tuple(tensor.shape)}"
            )
    unexpected = [key for key in state_dict if key not in expected]
    if unexpected:
        raise CheckpointError(
            f"{source}: tensor {STATE_DICT_KEY}/{unexpected[0]} is not in the model "
            f"{type(model).__name__}"
        )


def describe(path: str | os.PathLike) -> dict[str, Any]:
    """Summary of a checkpoint without reading its tensors: header, class, progress, sizes."""
    with open_checkpoint(path) as file:
        tree = file[TREE_GROUP]
        weights = tree.get(encode_name(STATE_DICT_KEY))
        tensors = (
            [node for node in weights.values() if isinstance(node, h5py.Dataset)] if weights else []
        )
        return {
            "path": str(path),
            "file_bytes": Path(path).stat().st_size,
            "format_version": int(file.attrs["format_version"]),
            "eventsnn_version": str(file.attrs.get("eventsnn_version", "")),
            "created": str(file.attrs.get("created", "")),
            "model_class": str(tree.attrs.get(MODEL_CLASS_KEY, "")) or None,
            "epoch": _optional_int(tree.attrs.get("epoch")),
            "global_step": _optional_int(tree.attrs.get("global_step")),
            "parameters": sum(node.size for node in tensors),  # parameters and buffers
            "tensors": len(tensors),
            "tensor_bytes": sum(node.nbytes for node in tensors),
            "contents": [str(key) for key in dict_keys(tree)],
        }


def convert(
    source: str | os.PathLike, target: str | os.PathLike, model_class: str | None = None
) -> None:
    """Convert a Lightning ``.ckpt`` (torch pickle) into an HDF5 checkpoint at `target`.

    The source is read with ``torch.load(weights_only=True)``, torch's restricted unpickler that
    builds only tensors and plain containers. `model_class` records the module's class path for
    :func:`load_model` when the source lacks it.
    """
    try:
        checkpoint = torch.load(source, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as error:  # torch raises UnpicklingError, RuntimeError, EOFError...
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
        raise CheckpointError(
            f"{source}: not a checkpoint torch reads safely ({first_line})"
        ) from error
    if not isinstance(checkpoint, dict):
        raise CheckpointError(
            f"{source}: holds a {type(checkpoint).__name__}, not a checkpoint dict"
        )
    if model_class is not None:
        checkpoint[MODEL_CLASS_KEY] = model_class
    write_checkpoint(target, checkpoint)


def _optional_int(value: Any) -> int | None:
    return None if value is None else int(value)


def _model_class(
    name: Any, path: str | os.PathLike, allowed_classes: Iterable[type]
) -> type[pl.LightningModule]:
    allowed = {class_path(cls): cls for cls in allowed_classes}
    if not isinstance(name, str):
        raise CheckpointError(f"{path}: {MODEL_CLASS_KEY} is missing; cannot rebuild the module")
    if name in allowed:
        cls = allowed[name]
    elif name.startswith(TRUSTED_PREFIX):
        module_name, _, attribute = name.rpartition(".")
        try:
            cls = getattr(importlib.import_module(module_name), attribute)
        except (ImportError, AttributeError) as error:
            raise CheckpointError(f"{path}: {MODEL_CLASS_KEY} {name!r} cannot be found") from error
    else:
        raise CheckpointError(
            f"{path}: {MODEL_CLASS_KEY} {name!r} is neither under {TRUSTED_PREFIX!r} nor in "
            "allowed_classes; refusing to import it (importing runs code)"
        )
    if not (isinstance(cls, type) and issubclass(cls, pl.LightningModule)):
        raise CheckpointError(f"{path}: {MODEL_CLASS_KEY} {name!r} is not a LightningModule")
    return cls


def _init_arguments(cls: type, hparams: Mapping[str, Any], path: str | os.PathLike) -> dict:
    arguments = {key: value for key, value in hparams.items() if key not in _CLI_HPARAMS}
    parameters = inspect.signature(cls.__init__).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return arguments
    for key in arguments:
        parameter = parameters.get(key)
        if key == "self" or parameter is None or parameter.kind is parameter.POSITIONAL_ONLY:
            raise CheckpointError(
                f"{path}: hyper-parameter {HPARAMS_KEY}/{key} is not an argument of "
                f"{class_path(cls)}"
            )
    return arguments


def _restore(
    model: torch.nn.Module, checkpoint: Mapping[str, Any], path: str | os.PathLike, states: bool
) -> None:
    if STATE_DICT_KEY not in checkpoint:
        raise CheckpointError(f"{path}: group {STATE_DICT_KEY} is missing")
    check_state_dict(model, checkpoint[STATE_DICT_KEY], path)
    if states and checkpoint.get(NEURON_STATES_KEY) is not None:
        _set_states_or_keep(model, checkpoint[NEURON_STATES_KEY], path)
    model.load_state_dict(checkpoint[STATE_DICT_KEY])


def _set_states_or_keep(model: torch.nn.Module, states: Any, path: str | os.PathLike) -> None:
    """Set the neuron states, or put the previous ones back and raise CheckpointError."""
    previous = eventsnn.nn.get_states(model)
    try:
        if not isinstance(states, Mapping):
            raise eventsnn.nn.StateError(f"expected a dict of tensors, got {type(states).__name__}")
        eventsnn.nn.set_states(model, dict(states))
    except eventsnn.nn.StateError as error:
        eventsnn.nn.set_states(model, previous)
        raise CheckpointError(f"{path}: {NEURON_STATES_KEY}: {error}") from error
