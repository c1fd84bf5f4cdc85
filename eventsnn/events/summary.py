"""The numbers that describe a recording (what `eventsnn info` prints), as a pure function."""

from __future__ import annotations

from typing import Any

from eventsnn.events.core import Recording


def summarize(recording: Recording) -> dict[str, Any]:
    """Format, sensor size, event count, time range, duration, event rate and polarity balance.

    The rate is events per second over the span from the first to the last event (None when
    that span is zero); the ON fraction is None for an empty recording.
    """
    events = recording.events
    n_events = len(events)
    n_on = int(events["p"].sum())
    duration_us = recording.duration_us
    return {
        "path": None if recording.path is None else str(recording.path),
        "format": recording.format,
        "sensor_size": tuple(recording.sensor_size),
        "sensor_size_source": recording.metadata.get("sensor_size_source"),
        "n_events": n_events,
        "t_first_us": int(events["t"][0]) if n_events else None,
        "t_last_us": int(events["t"][-1]) if n_events else None,
        "duration_us": duration_us,
        "event_rate_hz": n_events / (duration_us * 1e-6) if duration_us > 0 else None,
        "n_on": n_on,
        "n_off": n_events - n_on,
        "on_fraction": n_on / n_events if n_events else None,
        "truncated": recording.truncated,
    }
