"""Prophesee DAT files of event type 0x00 (the Gen1 automotive `*_td.dat` files) via expelliarmus.

faery refuses this event type; expelliarmus reads it (32-bit timestamps, x and y of 14 bits,
polarity of 4). These files usually carry no geometry in their header, so the sensor size comes
from the caller or from the largest coordinates (`io.read` records which).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import expelliarmus
import numpy as np

from eventsnn.events.formats.base import CHUNK_EVENTS, OpenedFile, library_errors, to_events
from eventsnn.events.formats.framing import PercentHeader, partial_record_bytes

GEN1_EVENT_BYTES = 8


def open_gen1_dat(path: Path, header: PercentHeader, event_size: int) -> OpenedFile:
    """A DAT file of type 0x00 (TD) events."""
    geometry = header.geometry()
    partial = partial_record_bytes(path.stat().st_size, header.data_offset + 2, event_size)

    def packets(t_start: int | None, t_stop: int | None) -> Iterator[np.ndarray]:
        with library_errors(path, "cannot decode Gen1 DAT"):
            wizard = expelliarmus.Wizard(encoding="dat", fpath=path, chunk_size=CHUNK_EVENTS)
            for chunk in wizard.read_chunk():
                yield to_events(chunk)

    return OpenedFile(
        format="dat",
        sensor_size=None if geometry is None else (*geometry, 2),
        packets=packets,
        metadata={"event_type": "td (0x00, Gen1)", "header": header.lines},
        damage=(
            None if partial == 0 else f"truncated: the file ends {partial} byte(s) into a DAT event"
        ),
    )
