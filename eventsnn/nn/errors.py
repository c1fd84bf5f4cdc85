"""Errors of the spiking-layer package: each names the layer, key or shape that is wrong."""


class NetworkError(ValueError):
    """Base of the errors raised by eventsnn.nn for bad specs, shapes or states."""


class ShapeError(NetworkError):
    """An input whose shape does not fit the layer or network (names both shapes)."""


class SpecError(NetworkError):
    """A network spec with an unknown layer name or bad parameters (names index and key)."""
