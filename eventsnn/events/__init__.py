"""The event array: dtype, validation, reading and writing files, simulation."""

from eventsnn.events.core import (
    EVENT_DTYPE,
    EventsError,
    Recording,
    SensorSize,
    SensorSizeError,
    as_sensor_size,
    copy_events,
    empty_events,
    join_events,
    make_events,
    validate,
)
from eventsnn.events.summary import summarize

_IO_NAMES = ("iter_chunks", "iter_packets", "read", "time_index", "write")


def __getattr__(name: str):
    """File I/O and the simulator on first use: they import faery, h5py and numba."""
    if name in _IO_NAMES:
        from eventsnn.events import io

        return getattr(io, name)
    if name == "decoding_threads":
        from eventsnn.events.formats.hdf5_chunks import decoding_threads

        return decoding_threads
    if name == "simulate":
        from eventsnn.events.simulate import simulate

        return simulate
    raise AttributeError(f"module 'eventsnn.events' has no attribute {name!r}")


__all__ = [
    "EVENT_DTYPE",
    "EventsError",
    "Recording",
    "SensorSize",
    "SensorSizeError",
    "as_sensor_size",
    "copy_events",
    "decoding_threads",
    "empty_events",
    "iter_chunks",
    "iter_packets",
    "join_events",
    "make_events",
    "read",
    "simulate",
    "summarize",
    "time_index",
    "validate",
    "write",
]
