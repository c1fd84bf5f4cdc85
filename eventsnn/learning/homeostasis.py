"""Homeostasis: adaptive thresholds and per-neuron weight normalization (pure functions)."""

from __future__ import annotations

from torch import Tensor

from eventsnn.learning.errors import LearningError


def adaptive_threshold_step(
    theta: Tensor, spikes: Tensor, theta_plus: float, decay: float
) -> Tensor:
    """Adaptive threshold (Diehl & Cook 2015): theta decays and rises by ``theta_plus`` on each
    spike, so that neurons that fire a lot get harder to fire."""
    return theta * decay + theta_plus * spikes


def normalize_weights(weights: Tensor, total: float) -> Tensor:
    """Scale each output neuron's incoming weights (dim 0 indexes neurons) to sum to ``total``;
    neurons whose weights sum to zero are left as they are."""
    if total <= 0:
        raise LearningError(f"weight normalization total must be > 0, got {total}")
    sums = weights.sum(dim=tuple(range(1, weights.ndim)), keepdim=True)
    return weights * (total / sums.where(sums != 0, total))
