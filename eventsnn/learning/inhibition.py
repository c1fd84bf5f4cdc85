"""Competition between neurons: hard winner-take-all (k-WTA, per-position channel WTA) and soft
lateral inhibition. Pure functions on one time step of spikes ``(B, N)`` or ``(B, C, H, W)``."""

from __future__ import annotations

import torch
from torch import Tensor

from eventsnn.learning.errors import LearningError


def kwta(spikes: Tensor, scores: Tensor, k: int = 1) -> Tensor:
    """Keep at most ``k`` spikes per sample along the last dim: the spiking neurons with the
    highest ``scores`` (e.g. membrane potential); the other spikes are removed."""
    if k < 1:
        raise LearningError(f"k-WTA needs k >= 1, got k={k}")
    if k >= spikes.shape[-1]:
        return spikes
    masked = torch.where(spikes > 0, scores, torch.full_like(scores, float("-inf")))
    top = masked.topk(k, dim=-1).indices
    keep = torch.zeros_like(spikes).scatter_(-1, top, 1.0)
    return spikes * keep


def channel_wta(spikes: Tensor, scores: Tensor) -> Tensor:
    """Winner-take-all across channels at each position of ``(B, C, H, W)`` spikes: only the
    spiking channel with the highest score keeps its spike there (Kheradpisheh et al. 2018)."""
    if spikes.ndim != 4:
        raise LearningError(f"channel WTA needs (B, C, H, W) spikes, got {tuple(spikes.shape)}")
    return kwta(spikes.movedim(1, -1), scores.movedim(1, -1), 1).movedim(-1, 1)


def lateral_inhibition(spikes: Tensor, strength: float | Tensor) -> Tensor:
    """Input current from soft lateral inhibition: each spike inhibits every other neuron of the
    sample by ``strength``, a scalar or an ``(N, N)`` matrix of inhibitory weights (row: source)."""
    if isinstance(strength, Tensor) and strength.ndim == 2:
        return -(spikes @ strength)
    return -strength * (spikes.sum(-1, keepdim=True) - spikes)
