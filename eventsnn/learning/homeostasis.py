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


def normalize_weights(weights: Tensor, total: float, order: int = 1) -> Tensor:
    """Scale each output neuron's incoming weights (dim 0 indexes neurons) to a norm of ``total``:
    their sum (``order=1``, Diehl & Cook) or their Euclidean norm (``order=2``, so that the input
    a neuron answers most is the one closest in angle to its weights). All-zero neurons stay."""
    return weights * normalization_factors(weights, total, order)


def normalization_factors(weights: Tensor, total: float, order: int = 1) -> Tensor:
    """The per-neuron factors (shaped to broadcast over ``weights``) of `normalize_weights`, so
    that a large weight can be scaled in place."""
    if total <= 0:
        raise LearningError(f"weight normalization total must be > 0, got {total}")
    if order not in (1, 2):
        raise LearningError(f"weight normalization order must be 1 or 2, got {order}")
    dims = tuple(range(1, weights.ndim))
    norms = weights.sum(dims, keepdim=True) if order == 1 else weights.norm(dim=dims, keepdim=True)
    return total / norms.where(norms != 0, total)


def adaptive_threshold_window(
    theta: Tensor, spikes: Tensor, theta_plus: float, decay: float, reduce: str = "mean"
) -> Tensor:
    """Theta after a window of spikes ``(T, B, N)`` shared by a batch of samples.

    ``"sum"`` counts the batch as B windows run one after another (theta rises by ``theta_plus``
    for every spike and decays over T * B steps); ``"mean"`` as one window of the mean sample
    (rises by the mean count, decays over T steps): the same choice as STDP's ``reduce``.
    """
    steps, batch = spikes.shape[0], spikes.shape[1]
    counts = spikes.sum(dim=(0, 1))
    if reduce == "mean":
        return theta * decay**steps + theta_plus * counts / batch
    if reduce != "sum":
        raise LearningError(f"unknown reduce {reduce!r}; expected 'mean' or 'sum'")
    return theta * decay ** (steps * batch) + theta_plus * counts
