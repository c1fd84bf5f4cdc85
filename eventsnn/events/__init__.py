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

__all__ = [
    "EVENT_DTYPE",
    "EventsError",
    "Recording",
    "SensorSize",
    "as_sensor_size",
    "empty_events",
    "make_events",
    "validate",
]
