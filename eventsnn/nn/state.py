"""State of a whole network: reset, detach, read and write the state of every stateful layer.

State lives on the layers (not in a global registry, not in `state_dict`); these functions walk
`model.named_modules()` and act on each `Stateful` one, so several networks never interfere.
"""

from __future__ import annotations

import torch
from torch import nn


class StateError(ValueError):
    """`set_states` got a key that names no state of the model, or a wrong shape."""


class Stateful:
    """Mixin for modules that carry state between calls (neurons, spiking max pooling)."""

    def reset_state(self) -> None:
        """Forget the state: the next call starts from rest, shaped for its input."""
        raise NotImplementedError

    def get_state(self) -> dict[str, torch.Tensor]:
        """The current state tensors by name (empty when at rest)."""
        raise NotImplementedError

    def set_state(self, state: dict[str, torch.Tensor]) -> None:
        """Replace the state with the given tensors (names as `get_state` returns them)."""
        raise NotImplementedError


def _stateful(model: nn.Module) -> list[tuple[str, Stateful]]:
    return [(name, m) for name, m in model.named_modules() if isinstance(m, Stateful)]


def reset_states(model: nn.Module) -> None:
    """Put every stateful layer of `model` back at rest (call between independent samples)."""
    for _, module in _stateful(model):
        module.reset_state()


def detach_states(model: nn.Module) -> None:
    """Cut the autograd history of all state (truncated BPTT between windows of a sequence)."""
    for _, module in _stateful(model):
        module.set_state({k: v.detach() for k, v in module.get_state().items()})


def get_states(model: nn.Module) -> dict[str, torch.Tensor]:
    """All state tensors of `model`, keyed "<module path>.<state name>" (e.g. "3.v")."""
    return {
        f"{name}.{key}" if name else key: value
        for name, module in _stateful(model)
        for key, value in module.get_state().items()
    }


def set_states(model: nn.Module, states: dict[str, torch.Tensor]) -> None:
    """Restore state saved by `get_states`; layers missing from `states` are reset to rest."""
    modules = _stateful(model)
    by_module: dict[str, dict[str, torch.Tensor]] = {name: {} for name, _ in modules}
    for key, value in states.items():
        name, _, field = key.rpartition(".")
        if name not in by_module:
            raise StateError(f"state key {key!r} names no stateful layer of the model")
        by_module[name][field] = value
    for name, module in modules:
        if by_module[name]:
            module.set_state(by_module[name])
        else:
            module.reset_state()
