"""Headers and record framing of vendor files: where the data starts and whether the end is cut.

The vendor decoders (faery, expelliarmus) silently drop a partial last record, so a file cut in
the middle of a record would read as a shorter but seemingly whole recording. These checks find
such a cut without decoding: fixed-size records (EVT2, EVT3, DAT) by the size of the data part,
Event Stream's variable-size records by walking its framing bytes (compiled with numba).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

HEADER_SCAN_BYTES = 1 << 16
"""Longest text header looked at (Prophesee headers are a few hundred bytes)."""


@dataclass(frozen=True)
class PercentHeader:
    """The '%'-prefixed text header of a Prophesee EVT (.raw) or DAT file."""

    lines: list[str] = field(default_factory=list)
    data_offset: int = 0

    def geometry(self) -> tuple[int, int] | None:
        """(width, height) if the header states them, in any of the spellings in use."""
        text = "\n".join(self.lines)
        for pattern in (
            r"geometry\s+(\d+)\s*x\s*(\d+)",
            r"width=(\d+);height=(\d+)",
        ):
            match = re.search(pattern, text, flags=re.IGNORECASE)
            if match:
                return int(match.group(1)), int(match.group(2))
        width = re.search(r"^%\s*width\s+(\d+)", text, flags=re.IGNORECASE | re.MULTILINE)
        height = re.search(r"^%\s*height\s+(\d+)", text, flags=re.IGNORECASE | re.MULTILINE)
        if width and height:
            return int(width.group(1)), int(height.group(1))
        return None


def read_percent_header(path: Path) -> PercentHeader:
    """Read the leading '%' lines; data starts after '% end' or the first line without '%'."""
    with open(path, "rb") as f:
        head = f.read(HEADER_SCAN_BYTES)
    lines: list[str] = []
    offset = 0
    while offset < len(head) and head[offset : offset + 1] == b"%":
        newline = head.find(b"\n", offset)
        if newline < 0:
            break
        line = head[offset:newline].decode("latin-1").rstrip("\r")
        lines.append(line)
        offset = newline + 1
        if line.strip() == "% end":
            break
    return PercentHeader(lines=lines, data_offset=offset)


def partial_record_bytes(file_size: int, data_offset: int, record_size: int) -> int:
    """Bytes of an incomplete last record in a file of fixed-size records (0 when whole)."""
    return max(file_size - data_offset, 0) % record_size


def _es_whole_records_end(data: np.ndarray, marker_shift: int, marker: int, event_bytes: int):
    """Offset where the last whole Event Stream record ends (the length when nothing is cut)."""
    i = 0
    n = data.shape[0]
    while i < n:
        if (data[i] >> marker_shift) == marker:  # overflow or reset: one byte
            i += 1
        elif i + event_bytes > n:
            return i
        else:
            i += event_bytes
    return n


@functools.cache
def _compiled_es_scan():
    """The scan compiled with numba (imported here: only Event Stream files need it)."""
    import numba

    return numba.njit(cache=True)(_es_whole_records_end)


ES_FRAMING = {"dvs": (1, 0x7F, 5), "atis": (2, 0x3F, 5)}
"""Event Stream 2.x framing per event type: (marker shift, marker, bytes per event)."""

ES_DATA_OFFSET = 20
"""Event Stream 2.x DVS/ATIS: 15-byte signature and version, type byte, width and height."""


def es_partial_record_bytes(path: Path, event_type: str) -> int:
    """Bytes of an incomplete last event in an Event Stream file (0 when whole)."""
    size = path.stat().st_size
    if size <= ES_DATA_OFFSET:
        return 0
    data = np.memmap(path, dtype=np.uint8, mode="r", offset=ES_DATA_OFFSET)
    shift, marker, event_bytes = ES_FRAMING[event_type]
    end = _compiled_es_scan()(data, shift, marker, event_bytes)
    return int(data.shape[0] - end)
