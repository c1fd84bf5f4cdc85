"""Readouts: the output layer's activity over time (T, B, classes) into logits (B, classes)."""

from __future__ import annotations

from collections.abc import Callable

import torch


def spike_count(activity: torch.Tensor) -> torch.Tensor:
    """Total output spikes per class (rate coding)."""
    return activity.sum(0)


def max_membrane(activity: torch.Tensor) -> torch.Tensor:
    """Highest membrane potential each output neuron reached."""
    return activity.amax(0)


def mean_membrane(activity: torch.Tensor) -> torch.Tensor:
    """Membrane potential of each output neuron averaged over time."""
    return activity.mean(0)


READOUTS: dict[str, tuple[Callable[[torch.Tensor], torch.Tensor], bool]] = {
    "count": (spike_count, False),
    "max_membrane": (max_membrane, True),
    "mean_membrane": (mean_membrane, True),
}
"""Readout name -> (function, whether it reads the output layer's membrane instead of spikes)."""
