"""Synapses and shape layers for time-first tensors: conv, linear, pooling, cropping, flatten.

Synapses run once on all time steps by folding T into the batch: (T, B, C, H, W) becomes
(T*B, C, H, W) for the convolution and is unfolded after. 2-D layers also take a single step
(B, C, H, W). Every layer reports `output_shape(input_shape)` for one sample's shape (no T, B).
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from eventsnn.encoding import values
from eventsnn.nn.errors import ShapeError
from eventsnn.nn.neurons import SpikingNeuron
from eventsnn.nn.state import Stateful

Pair = int | tuple[int, int]


def _pair(value: Pair) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


def _window_out(size: int, kernel: int, stride: int, padding: int, dilation: int = 1) -> int:
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def _check_image(layer: nn.Module, input_shape: Sequence[int]) -> tuple[int, int, int]:
    if len(input_shape) != 3:
        raise ShapeError(
            f"{type(layer).__name__} needs a (C, H, W) input shape, got {tuple(input_shape)}"
        )
    c, h, w = input_shape
    return int(c), int(h), int(w)


def fold_time(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """fn applied to (T, B, C, H, W) as one (T*B, C, H, W) batch; (B, C, H, W) passes as is."""
    if x.dim() == 4:
        return fn(x)
    if x.dim() != 5:
        raise ShapeError(f"expected (T, B, C, H, W) or (B, C, H, W), got {tuple(x.shape)}")
    out = fn(x.flatten(0, 1))
    return out.view(x.shape[0], x.shape[1], *out.shape[1:])


class Conv2d(nn.Conv2d):
    """torch's Conv2d over (T, B, C, H, W) sequences (folded) or (B, C, H, W) steps."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return fold_time(super().forward, x)

    def output_shape(self, input_shape: Sequence[int]) -> tuple[int, ...]:
        """(out_channels, H', W') for a (C, H, W) input."""
        c, h, w = _check_image(self, input_shape)
        if c != self.in_channels:
            raise ShapeError(
                f"Conv2d expects {self.in_channels} input channels, got {tuple(input_shape)}"
            )
        if self.padding == "same":
            return (self.out_channels, h, w)
        pad = (0, 0) if self.padding == "valid" else self.padding
        sizes = [
            _window_out(s, k, st, p, d)
            for s, k, st, p, d in zip(
                (h, w), self.kernel_size, self.stride, pad, self.dilation, strict=True
            )
        ]
        return (self.out_channels, *sizes)


class Linear(nn.Linear):
    """torch's Linear; it already maps any leading dims, (T, B, F) included."""

    def output_shape(self, input_shape: Sequence[int]) -> tuple[int, ...]:
        """(out_features,) for an (in_features,) input."""
        if tuple(input_shape) != (self.in_features,):
            raise ShapeError(
                f"Linear expects input shape ({self.in_features},), got {tuple(input_shape)};"
                " put a flatten layer before it"
            )
        return (self.out_features,)


class _Pool2d(nn.Module):
    """Shared shape logic of the 2-D pooling layers (kernel, stride defaulting to kernel)."""

    def __init__(self, kernel_size: Pair, stride: Pair | None = None, padding: Pair = 0) -> None:
        super().__init__()
        self.kernel_size = _pair(kernel_size)
        self.stride = _pair(stride) if stride is not None else self.kernel_size
        self.padding = _pair(padding)
        if min(self.kernel_size + self.stride) < 1 or min(self.padding) < 0:
            raise ValueError(
                f"pool kernel and stride must be >= 1 and padding >= 0, got kernel "
                f"{self.kernel_size}, stride {self.stride}, padding {self.padding}"
            )

    def output_shape(self, input_shape: Sequence[int]) -> tuple[int, ...]:
        """(C, H', W') for a (C, H, W) input."""
        c, h, w = _check_image(self, input_shape)
        sizes = [
            _window_out(s, k, st, p)
            for s, k, st, p in zip((h, w), self.kernel_size, self.stride, self.padding, strict=True)
        ]
        return (c, *sizes)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class MaxPool2d(_Pool2d):
    """Max pooling of each time step (of spikes: 1 where any input of the window spiked).

    2x2 windows with stride 2 on CPU run through a numba kernel that stores no indices.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        if (
            self.kernel_size == (2, 2)
            and self.stride == (2, 2)
            and self.padding == (0, 0)
            and x.device.type == "cpu"
            and x.dtype in (torch.float32, torch.float64)
        ):
            from eventsnn.nn.kernels import max_pool_2x2  # numba loads on first use

            return max_pool_2x2(x)
        return fold_time(lambda y: F.max_pool2d(y, self.kernel_size, self.stride, self.padding), x)


class SumPool2d(_Pool2d):
    """Sum pooling (Sinabs' SumPool2d, LPPool2d with p=1): the window's total input."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        kh, kw = self.kernel_size
        if self.stride == self.kernel_size and self.padding == (0, 0) and kh * kw <= 16:
            return _sum_tiles(x, kh, kw)
        return fold_time(
            lambda y: F.avg_pool2d(
                y, self.kernel_size, self.stride, self.padding, divisor_override=1
            ),
            x,
        )


def _sum_tiles(x: torch.Tensor, kh: int, kw: int) -> torch.Tensor:
    """Sums of non-overlapping kh x kw tiles (partial ones at the edge dropped, as pooling does)
    as kh + kw strided additions: ~10x faster than avg_pool2d for 2x2 on CPU, any leading dims.
    """
    h, w = x.shape[-2] // kh * kh, x.shape[-1] // kw * kw
    rows = functools.reduce(operator.add, [x[..., i:h:kh, :w] for i in range(kh)])
    return functools.reduce(operator.add, [rows[..., j::kw] for j in range(kw)])


class SpikingMaxPool2d(Stateful, _Pool2d):
    """Sinabs' SpikingMaxPooling2dLayer: pass a spike of the window's most active input so far.

    At each step an input spike passes when the spiking input's cumulative count equals the
    window's maximal cumulative count. The counts carry over between calls (state), so chunked
    sequences give the same result as one call. Input (T, B, C, H, W).
    """

    def __init__(self, kernel_size: Pair, stride: Pair | None = None, padding: Pair = 0) -> None:
        super().__init__(kernel_size, stride, padding)
        self._counts: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        if x.dim() != 5:
            raise ShapeError(f"SpikingMaxPool2d needs (T, B, C, H, W), got {tuple(x.shape)}")
        counts = torch.cumsum(x, 0)
        if self._counts is not None and self._counts.shape == x.shape[1:]:
            counts = counts + self._counts
        self._counts = counts[-1]

        def pool(y: torch.Tensor) -> torch.Tensor:
            return fold_time(
                lambda z: F.max_pool2d(z, self.kernel_size, self.stride, self.padding), y
            )

        gate = pool(counts * (x > 0)) >= pool(counts)
        return gate.to(x.dtype) * pool(x)

    def reset_state(self) -> None:  # noqa: D102
        self._counts = None

    def get_state(self) -> dict[str, torch.Tensor]:  # noqa: D102
        return {} if self._counts is None else {"counts": self._counts}

    def set_state(self, state: dict[str, torch.Tensor]) -> None:  # noqa: D102
        self._counts = state.get("counts")


class Crop2d(nn.Module):
    """Crop ((top, bottom), (left, right)) pixels off each frame, as Sinabs' Cropping2dLayer."""

    def __init__(self, cropping: Sequence[Sequence[int]] = ((0, 0), (0, 0))) -> None:
        super().__init__()
        (top, bottom), (left, right) = cropping
        if min(top, bottom, left, right) < 0:
            raise ValueError(f"cropping must be non-negative, got {cropping!r}")
        self.cropping = ((int(top), int(bottom)), (int(left), int(right)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        (top, bottom), (left, right) = self.cropping
        h, w = x.shape[-2:]
        return x[..., top : h - bottom, left : w - right]

    def output_shape(self, input_shape: Sequence[int]) -> tuple[int, ...]:
        """(C, H - top - bottom, W - left - right)."""
        c, h, w = _check_image(self, input_shape)
        (top, bottom), (left, right) = self.cropping
        return (c, h - top - bottom, w - left - right)

    def extra_repr(self) -> str:
        return f"cropping={self.cropping}"


class Flatten(nn.Module):
    """Flatten each sample's features, keeping the (T, B) dims in front."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return x.flatten(2)

    def output_shape(self, input_shape: Sequence[int]) -> tuple[int, ...]:
        """(prod(input_shape),)."""
        size = 1
        for s in input_shape:
            size *= int(s)
        return (size,)


class Input(nn.Module):
    """Checks that (T, B, *shape) input has the expected per-sample shape; passes it through."""

    def __init__(self, shape: Sequence[int]) -> None:
        super().__init__()
        self.shape = tuple(int(s) for s in shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        if tuple(x.shape[2:]) != self.shape:
            raise ShapeError(
                f"input of shape {tuple(x.shape)} does not match (T, B, *{self.shape})"
            )
        return x

    def output_shape(self, input_shape: Sequence[int]) -> tuple[int, ...]:
        """The declared shape."""
        if tuple(input_shape) != self.shape:
            raise ShapeError(f"Input expects shape {self.shape}, got {tuple(input_shape)}")
        return self.shape

    def extra_repr(self) -> str:
        return f"shape={self.shape}"


class Elementwise(nn.Module):
    """Wraps a shape-keeping torch module (ReLU, Dropout) so it reports its output shape."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.module(x)

    def output_shape(self, input_shape: Sequence[int]) -> tuple[int, ...]:
        """Same as the input."""
        return tuple(input_shape)


class SpikingBlock(nn.Module):
    """A synapse (conv or linear) followed by a spiking neuron."""

    def __init__(self, synapse: nn.Module, neuron: SpikingNeuron) -> None:
        super().__init__()
        self.synapse = synapse
        self.neuron = neuron
        neuron.overwrite_input = True  # the synapse's output goes to the neuron only

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.neuron(self.synapse(x))

    def output_shape(self, input_shape: Sequence[int]) -> tuple[int, ...]:
        """The synapse's output shape."""
        return self.synapse.output_shape(input_shape)


def spiking_conv2d(
    in_channels: int, out_channels: int, kernel_size: Pair, neuron: SpikingNeuron, **conv_kwargs
) -> SpikingBlock:
    """Conv2d -> neuron, for (T, B, C, H, W) input."""
    return SpikingBlock(Conv2d(in_channels, out_channels, kernel_size, **conv_kwargs), neuron)


def spiking_linear(
    in_features: int, out_features: int, neuron: SpikingNeuron, bias: bool = True
) -> SpikingBlock:
    """Linear -> neuron, for (T, B, F) input."""
    return SpikingBlock(Linear(in_features, out_features, bias=bias), neuron)


class Img2Spike(nn.Module):
    """Images (B, ...) to Poisson spike trains (tw, B, ...), as Sinabs' Img2SpikeLayer.

    A value v fires with probability v / norm * max_rate / 1000 per step (1 ms steps);
    negative_spikes gives -1 spikes for negative values. Wraps `eventsnn.encoding.values.rate`.
    """

    def __init__(
        self,
        tw: int = 100,
        max_rate: float = 1000,
        norm: float = 255.0,
        negative_spikes: bool = False,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.tw, self.max_rate, self.norm = tw, max_rate, norm
        self.negative_spikes, self.generator = negative_spikes, generator

    def forward(self, images: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return values.rate(
            images, self.tw, self.max_rate, self.norm, self.negative_spikes, self.generator
        )

    def output_shape(self, input_shape: Sequence[int]) -> tuple[int, ...]:
        """Same per-step shape as the image (time is added in front)."""
        return tuple(input_shape)


class Sig2Spike(nn.Module):
    """Analogue signals (T, B, C) to spikes (tw * T, B, C), as Sinabs' Sig2SpikeLayer.

    Each sample is held for tw steps and fires where U[0, norm_level) < the signal; with
    spk_out=False the held signal itself is passed on (current injection).
    """

    def __init__(
        self,
        tw: int = 1,
        norm_level: float = 1.0,
        spk_out: bool = True,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.tw, self.norm_level, self.spk_out, self.generator = tw, norm_level, spk_out, generator

    def forward(self, signal: torch.Tensor) -> torch.Tensor:  # noqa: D102
        if signal.dim() != 3:
            raise ShapeError(f"Sig2Spike needs (T, B, C) signals, got {tuple(signal.shape)}")
        steps, batch, channels = signal.shape
        if not self.spk_out:
            return signal.repeat_interleave(self.tw, dim=0)
        per_channel = signal.reshape(steps, batch * channels).t()  # (B*C, T) as Sinabs' (C, T)
        spikes = values.signal_to_spike(per_channel, self.tw, self.norm_level, self.generator)
        return spikes.view(self.tw * steps, batch, channels)

    def output_shape(self, input_shape: Sequence[int]) -> tuple[int, ...]:
        """Same channels per step (time grows tw-fold)."""
        return tuple(input_shape)
