"""A network from a plain, YAML-friendly list of layer specs, with shape inference and a summary.

    net = build([{"conv": {"out": 12, "kernel": 5}}, {"lif": {"beta": 0.9}}, {"maxpool": 2},
                 {"flatten": {}}, {"linear": {"out": 10}}, {"lif": {"beta": 0.9}}], (2, 34, 34))
    net(x)                 # x (T, B, 2, 34, 34) -> (T, B, 10) spikes; x (B, 2, 34, 34): one step
    print(net.summary())   # layer, output shape, parameters, neurons

Each entry is a one-key mapping `{layer_name: params}` (params: a mapping of keywords, a scalar
such as a pool size, or nothing) or a bare layer name. Input channels and features are inferred.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from eventsnn.nn.errors import ShapeError, SpecError
from eventsnn.nn.layers import (
    Conv2d,
    Crop2d,
    Elementwise,
    Flatten,
    Linear,
    MaxPool2d,
    SpikingMaxPool2d,
    SumPool2d,
)
from eventsnn.nn.neurons import ALIF, IAF, LIF, SpikingNeuron
from eventsnn.nn.quantize import NeuromorphicReLU, Quantize

Shape = tuple[int, ...]


def _conv(
    shape: Shape, out: int, kernel: int, stride: int = 1, padding: int = 0, bias: bool = True
):
    return Conv2d(shape[0], out, kernel, stride=stride, padding=padding, bias=bias)


def _linear(shape: Shape, out: int, bias: bool = True) -> Linear:
    if len(shape) != 1:
        raise ShapeError(f"linear needs flat (F,) input, got {shape}; add {{flatten: {{}}}} first")
    return Linear(shape[0], out, bias=bias)


def _pool(cls: type[nn.Module]) -> Callable[..., nn.Module]:
    def make(shape: Shape, kernel: int, stride: int | None = None, padding: int = 0) -> nn.Module:
        return cls(kernel, stride, padding)

    return make


def _crop(shape: Shape, top: int = 0, bottom: int = 0, left: int = 0, right: int = 0) -> Crop2d:
    return Crop2d(((top, bottom), (left, right)))


def _neuron(cls: type[SpikingNeuron]) -> Callable[..., nn.Module]:
    def make(shape: Shape, recurrent: bool = False, **kwargs: Any) -> nn.Module:
        return cls(recurrent_features=math.prod(shape) if recurrent else None, **kwargs)

    return make


def _dropout(shape: Shape, p: float = 0.5) -> Elementwise:
    return Elementwise(nn.Dropout(p))


def _relu(shape: Shape) -> Elementwise:
    return Elementwise(nn.ReLU())


def _flatten(shape: Shape) -> Flatten:
    return Flatten()


def _quantize(shape: Shape) -> Quantize:
    return Quantize()


def _neuromorphic_relu(
    shape: Shape, quantize: bool = True, fanout: int = 1, stochastic_rounding: bool = False
) -> NeuromorphicReLU:
    return NeuromorphicReLU(quantize, fanout, stochastic_rounding)


LAYERS: dict[str, Callable[..., nn.Module]] = {
    "conv": _conv,
    "linear": _linear,
    "lif": _neuron(LIF),
    "iaf": _neuron(IAF),
    "alif": _neuron(ALIF),
    "maxpool": _pool(MaxPool2d),
    "sumpool": _pool(SumPool2d),
    "spiking_maxpool": _pool(SpikingMaxPool2d),
    "crop": _crop,
    "flatten": _flatten,
    "dropout": _dropout,
    "relu": _relu,
    "quantize": _quantize,
    "neuromorphic_relu": _neuromorphic_relu,
}
"""Layer name -> factory(input_shape, **params)."""


class Network(nn.Sequential):
    """The built network: (T, B, *input_shape) -> (T, B, *output_shape); (B, ...) is one step."""

    def __init__(self, layers: Sequence[nn.Module], names: Sequence[str], input_shape: Shape):
        super().__init__(*layers)
        self.names = list(names)
        self.input_shape = tuple(input_shape)
        self.shapes: list[Shape] = []
        shape = self.input_shape
        for module in self:
            shape = module.output_shape(shape)
            self.shapes.append(shape)
        self.output_shape = shape

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        n = len(self.input_shape)
        if x.dim() == n + 1 and tuple(x.shape[1:]) == self.input_shape:
            return super().forward(x.unsqueeze(0))[0]
        if x.dim() != n + 2 or tuple(x.shape[2:]) != self.input_shape:
            raise ShapeError(
                f"network input must be (T, B, *{self.input_shape}) or (B, *{self.input_shape}),"
                f" got {tuple(x.shape)}"
            )
        return super().forward(x)

    def summary(self) -> str:
        """A table: index, layer, output shape, parameters and neurons per layer, and totals."""
        rows = [("#", "layer", "output shape", "params", "neurons")]
        total_params = total_neurons = 0
        rows.append(("", "input", str(self.input_shape), "", ""))
        for index, (name, module, shape) in enumerate(
            zip(self.names, self, self.shapes, strict=True)
        ):
            params = sum(p.numel() for p in module.parameters())
            neurons = math.prod(shape) if isinstance(module, SpikingNeuron) else 0
            total_params += params
            total_neurons += neurons
            rows.append(
                (str(index), name, str(shape), f"{params:,}", f"{neurons:,}" if neurons else "")
            )
        rows.append(("", "total", "", f"{total_params:,}", f"{total_neurons:,}"))
        widths = [max(len(r[c]) for r in rows) for c in range(5)]
        lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)) for r in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        return "\n".join(line.rstrip() for line in lines)


def _entry(index: int, entry: Any) -> tuple[str, Any]:
    if isinstance(entry, str):
        return entry, None
    if isinstance(entry, Mapping) and len(entry) == 1:
        ((name, params),) = entry.items()
        return str(name), params
    raise SpecError(
        f"layer {index}: a spec entry must be a layer name or a one-key mapping "
        f"{{name: params}}, got {entry!r}"
    )


def _make(index: int, name: str, params: Any, shape: Shape) -> nn.Module:
    if name not in LAYERS:
        raise SpecError(f"layer {index}: unknown layer {name!r}; known: {sorted(LAYERS)}")
    try:
        if params is None:
            return LAYERS[name](shape)
        if isinstance(params, Mapping):
            return LAYERS[name](shape, **params)
        return LAYERS[name](shape, params)
    except (TypeError, ValueError) as err:
        raise SpecError(f"layer {index} ({name}): bad parameters {params!r}: {err}") from None


def build(spec: Sequence[Any], input_shape: Sequence[int]) -> Network:
    """The network described by `spec` for samples of `input_shape` (per time step, no T/B).

    Raises SpecError naming the layer index and key for unknown layers, bad parameters or
    shapes that do not fit (e.g. a pool larger than its input).
    """
    if isinstance(spec, str | Mapping) or not isinstance(spec, Sequence):
        raise SpecError(f"a network spec is a list of layers, got {type(spec).__name__}")
    shape: Shape = tuple(int(s) for s in input_shape)
    layers: list[nn.Module] = []
    names: list[str] = []
    for index, entry in enumerate(spec):
        name, params = _entry(index, entry)
        module = _make(index, name, params, shape)
        try:
            out = module.output_shape(shape)
        except ShapeError as err:
            raise SpecError(f"layer {index} ({name}): {err}") from None
        if min(out, default=1) < 1:
            raise SpecError(
                f"layer {index} ({name}): output shape {out} is empty for input {shape}"
            )
        if isinstance(module, SpikingNeuron) and layers and isinstance(layers[-1], Conv2d | Linear):
            module.overwrite_input = True  # the synapse's fresh output is read by nothing else
        layers.append(module)
        names.append(name)
        shape = out
    return Network(layers, names, input_shape)
