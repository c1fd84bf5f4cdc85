"""Events on standard input: faery's ``output stdout`` CSV, or a byte stream of packet records.

CSV (``t,x,y,on`` with a header, as ``faery input ... output stdout`` writes it) is decoded by
faery's own incremental CSV reader. The binary formats of ``packets.py`` (e.g. faery's 13-byte
``t64_x16_y16_on8`` records) are read as they arrive, whole records at a time.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator, Sequence

import faery
import numpy as np

from eventsnn.events import EVENT_DTYPE, as_sensor_size
from eventsnn.streaming.packets import PacketError, make_decoder
from eventsnn.streaming.sources import Packet, SourceStats, StreamError

STREAM_FORMATS = ("csv", "t64_x16_y16_on8", "t32_x16_y15_on1")
"""Formats readable from a byte stream (SPIF needs datagram boundaries: UDP only)."""


def from_faery(events: np.ndarray) -> np.ndarray:
    """faery's event array (t u64, x u16, y u16, on bool) in the project's dtype."""
    out = np.empty(len(events), dtype=EVENT_DTYPE)
    out["t"] = events["t"]
    out["x"] = events["x"]
    out["y"] = events["y"]
    out["p"] = events["on"]
    return out


class StdinSource:
    """Events read from a file descriptor (standard input by default); see the module doc."""

    def __init__(
        self,
        format: str = "csv",
        sensor_size: Sequence[int] = (1280, 720, 2),
        fd: int | None = None,
        read_bytes: int = 1 << 16,
        csv_header: bool = True,
    ) -> None:
        if format not in STREAM_FORMATS:
            raise StreamError(f"stdin format {format!r} is not one of {STREAM_FORMATS}")
        self.format = format
        self.sensor_size = as_sensor_size(sensor_size)
        self.fd = sys.stdin.fileno() if fd is None else fd
        self.csv_header = csv_header  # CSV: the first line is a header (faery's t,x@W,y@H,on)
        self.read_bytes = read_bytes
        self.decoder = None if format == "csv" else make_decoder(format)
        self.stats = SourceStats()

    def __iter__(self) -> Iterator[Packet]:
        chunks = self._csv() if self.decoder is None else self._records()
        for events in chunks:
            self.stats.packets += 1
            self.stats.events += len(events)
            yield Packet(events, time.time_ns())

    def _csv(self) -> Iterator[np.ndarray]:
        if self.fd != 0:
            raise ValueError("faery reads CSV from standard input only (fd 0)")
        width, height, _ = self.sensor_size
        properties = faery.CsvProperties.default()
        properties.has_header = self.csv_header
        stream = faery.events_stream_from_stdin(
            dimensions=(width, height), csv_properties=properties
        )
        for events in stream:
            yield from_faery(events)

    def _records(self) -> Iterator[np.ndarray]:
        """Whole records as soon as they are readable; a partial record waits for its rest.

        A read whose records are malformed is counted and skipped; a partial record left at the
        end of the input counts as one malformed packet.
        """
        record_size = self.decoder.record_size
        pending = b""
        while data := os.read(self.fd, self.read_bytes):
            pending += data
            whole = len(pending) - len(pending) % record_size
            if whole:
                try:
                    yield self.decoder.decode(pending[:whole])
                except PacketError:
                    self.stats.malformed_packets += 1
                pending = pending[whole:]
        if pending:
            self.stats.malformed_packets += 1

    def close(self) -> None:
        """Standard input stays open; nothing to release."""
