"""Quantisation with straight-through gradients and Sinabs-style threshold functions.

For training analogue networks meant to run as spiking ones (Sinabs' workflow): `quantize`
floors, `stochastic_rounding` rounds up with probability equal to the fraction, both passing the
gradient unchanged; `NeuromorphicReLU` combines them with a ReLU and tracks its activity.
`threshold_subtract`/`threshold_reset` turn a membrane into spike counts / single spikes with a
window-shaped surrogate gradient.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class _Floor(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):  # noqa: D102
        return x.floor()

    @staticmethod
    def backward(ctx, grad):  # noqa: D102
        return grad


class _StochasticRound(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, generator):  # noqa: D102
        floor = x.floor()
        noise = torch.rand(x.shape, generator=generator, dtype=x.dtype, device=x.device)
        return floor + (noise < x - floor).to(x.dtype)

    @staticmethod
    def backward(ctx, grad):  # noqa: D102
        return grad, None


def quantize(x: torch.Tensor) -> torch.Tensor:
    """floor(x) forward, identity gradient backward (straight-through)."""
    return _Floor.apply(x)


def stochastic_rounding(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """ceil(x) with probability x - floor(x), else floor(x); identity gradient backward."""
    return _StochasticRound.apply(x, generator)


class _ThresholdSpikes(torch.autograd.Function):
    @staticmethod
    def forward(ctx, v, threshold: float, window: float, multi: bool):  # noqa: D102
        ctx.save_for_backward(v)
        ctx.threshold, ctx.window = threshold, window
        if multi:
            return (v > 0).to(v.dtype) * torch.div(v, threshold, rounding_mode="trunc")
        return (v >= threshold).to(v.dtype)

    @staticmethod
    def backward(ctx, grad):  # noqa: D102
        (v,) = ctx.saved_tensors
        window = (v >= ctx.threshold - ctx.window).to(v.dtype) / ctx.threshold
        return grad * window, None, None, None


def threshold_subtract(
    v: torch.Tensor, threshold: float = 1.0, window: float = 0.5
) -> torch.Tensor:
    """Spike counts trunc(v / threshold) for v > 0 (the reset-by-subtraction amount).

    Gradient: 1/threshold where v >= threshold - window, else 0 (Sinabs' ThresholdSubtract).
    """
    return _ThresholdSpikes.apply(v, float(threshold), float(window), True)


def threshold_reset(v: torch.Tensor, threshold: float = 1.0, window: float = 0.5) -> torch.Tensor:
    """One spike where v >= threshold (reset-to-zero neurons); gradient as threshold_subtract."""
    return _ThresholdSpikes.apply(v, float(threshold), float(window), False)


class Quantize(nn.Module):
    """`quantize` as a layer (identity when `enabled` is False)."""

    def __init__(self, enabled: bool = True) -> None:
        super().__init__()
        self.enabled = enabled

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return quantize(x) if self.enabled else x

    def output_shape(self, input_shape: Sequence[int]) -> tuple[int, ...]:
        """Same as the input."""
        return tuple(input_shape)


class NeuromorphicReLU(nn.Module):
    """ReLU whose output is an integer spike count, for analogue training of spiking networks.

    quantize: floor the output (straight-through gradient); stochastic_rounding: round
    stochastically instead while training (plain rounding in eval mode). After each call
    `activity` holds output.sum() / len(output) * fanout, the synaptic operations it causes per
    entry of the first dimension (fanout: the number of targets of each unit).
    """

    def __init__(
        self, quantize: bool = True, fanout: int = 1, stochastic_rounding: bool = False
    ) -> None:
        super().__init__()
        self.quantize = quantize
        self.fanout = fanout
        self.stochastic_rounding = stochastic_rounding
        self.activity: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        out = torch.relu(x)
        if self.quantize and self.stochastic_rounding:
            out = stochastic_rounding(out) if self.training else out.round()
        elif self.quantize:
            out = quantize(out)
        self.activity = out.sum() / len(out) * self.fanout
        return out

    def output_shape(self, input_shape: Sequence[int]) -> tuple[int, ...]:
        """Same as the input."""
        return tuple(input_shape)
