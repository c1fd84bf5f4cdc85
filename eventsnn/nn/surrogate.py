"""Surrogate gradients: the derivative that stands in for the Heaviside step's in backward.

Each surrogate is a small frozen object with a shape parameter; pick one by name
(`surrogate("fast_sigmoid", slope=25)`) or pass an object. Built-in kinds carry a `kind` code that
the fused CPU kernels in `eventsnn.nn.kernels` understand; a user-defined subclass that only
overrides `derivative` still works everywhere, through the unfused reference loop.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


class SurrogateError(ValueError):
    """An unknown surrogate name or a bad surrogate parameter."""


@dataclass(frozen=True)
class Surrogate:
    """Base class: `derivative(z)` is the pseudo-derivative of the spike at z = v - threshold."""

    kind = -1  # no fused kernel; subclasses that have one set their code

    @property
    def param(self) -> float:
        """The one shape parameter handed to the fused kernel."""
        return 0.0

    def derivative(self, z: torch.Tensor) -> torch.Tensor:
        """Pseudo-derivative d spike / d z, elementwise."""
        raise NotImplementedError


def _positive(name: str, value: float) -> None:
    if not value > 0:
        raise SurrogateError(f"surrogate parameter {name!r} must be > 0, got {value!r}")


@dataclass(frozen=True)
class FastSigmoid(Surrogate):
    """1 / (slope*|z| + 1)^2, as snnTorch's `fast_sigmoid` (SuperSpike)."""

    slope: float = 25.0
    kind = 0

    def __post_init__(self) -> None:
        _positive("slope", self.slope)

    @property
    def param(self) -> float:
        return self.slope

    def derivative(self, z: torch.Tensor) -> torch.Tensor:
        return 1.0 / (self.slope * z.abs() + 1.0) ** 2


@dataclass(frozen=True)
class Arctan(Surrogate):
    """(alpha/2) / (1 + (pi/2 * alpha * z)^2), as snnTorch's `atan`."""

    alpha: float = 2.0
    kind = 1

    def __post_init__(self) -> None:
        _positive("alpha", self.alpha)

    @property
    def param(self) -> float:
        return self.alpha

    def derivative(self, z: torch.Tensor) -> torch.Tensor:
        return (self.alpha / 2.0) / (1.0 + (math.pi / 2.0 * self.alpha * z) ** 2)


@dataclass(frozen=True)
class Sigmoid(Surrogate):
    """slope * sig(slope*z) * (1 - sig(slope*z)): the derivative of a steep logistic."""

    slope: float = 5.0
    kind = 2

    def __post_init__(self) -> None:
        _positive("slope", self.slope)

    @property
    def param(self) -> float:
        return self.slope

    def derivative(self, z: torch.Tensor) -> torch.Tensor:
        sig = torch.sigmoid(self.slope * z)
        return self.slope * sig * (1.0 - sig)


@dataclass(frozen=True)
class Triangle(Surrogate):
    """max(0, 1 - |z|/width) / width: a triangle of unit area around the threshold."""

    width: float = 1.0
    kind = 3

    def __post_init__(self) -> None:
        _positive("width", self.width)

    @property
    def param(self) -> float:
        return self.width

    def derivative(self, z: torch.Tensor) -> torch.Tensor:
        return torch.clamp(1.0 - z.abs() / self.width, min=0.0) / self.width


@dataclass(frozen=True)
class Boxcar(Surrogate):
    """1/width where |z| < width/2, else 0: a rectangle of unit area around the threshold."""

    width: float = 1.0
    kind = 4

    def __post_init__(self) -> None:
        _positive("width", self.width)

    @property
    def param(self) -> float:
        return self.width

    def derivative(self, z: torch.Tensor) -> torch.Tensor:
        return (z.abs() < self.width / 2.0).to(z.dtype) / self.width


@dataclass(frozen=True)
class StraightThrough(Surrogate):
    """A derivative of 1 everywhere: the spike passes gradients as the identity would."""

    kind = 5

    def derivative(self, z: torch.Tensor) -> torch.Tensor:
        return torch.ones_like(z)


SURROGATES: dict[str, type[Surrogate]] = {
    "fast_sigmoid": FastSigmoid,
    "arctan": Arctan,
    "atan": Arctan,
    "sigmoid": Sigmoid,
    "triangle": Triangle,
    "boxcar": Boxcar,
    "rectangular": Boxcar,
    "straight_through": StraightThrough,
}


def surrogate(spec: str | Surrogate = "fast_sigmoid", **params: float) -> Surrogate:
    """A surrogate from a name (with its shape parameter as keyword) or an object as is."""
    if isinstance(spec, Surrogate):
        if params:
            raise SurrogateError("parameters go into the surrogate object, not next to it")
        return spec
    if spec not in SURROGATES:
        raise SurrogateError(f"unknown surrogate {spec!r}; known: {sorted(SURROGATES)}")
    try:
        return SURROGATES[spec](**params)
    except TypeError as err:
        raise SurrogateError(f"bad parameters {params} for surrogate {spec!r}: {err}") from None
