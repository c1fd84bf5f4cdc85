"""The event array: dtype, validation, reading and writing files, simulation."""

from eventsnn.events.core import (
    EVENT_DTYPE,
    EventsError,
    Recording,
    SensorSize,
    as_sensor_size,
    empty_events,
    make_events,
    validate,
)
from eventsnn.events.io import iter_chunks, read, write
from eventsnn.events.summary import summarize

__all__ = [
    "EVENT_DTYPE",
    "EventsError",
    "Recording",
    "SensorSize",
    "as_sensor_size",
    "empty_events",
    "iter_chunks",
    "make_events",
    "read",
    "summarize",
    "validate",
    "write",
]
