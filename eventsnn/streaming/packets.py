"""Decoders of the event packet formats that arrive over UDP or a byte stream.

- ``t64_x16_y16_on8``: faery's default, 13-byte little-endian records (t u64, x u16, y u16, on u8),
  the layout of ``faery.EVENTS_DTYPE``.
- ``t32_x16_y15_on1``: faery's compact format, 8-byte records (t u32 that wraps around, x u16,
  y << 1 | on u16). The decoder unwraps t into int64 across packets.
- ``spif``: aestream's SPIF-style 32-bit words, little-endian: bits 0-14 y, bit 15 polarity,
  bits 16-30 x, bit 31 set when the word carries no timestamp. A word with bit 31 clear is followed
  by a u32 timestamp word (wrapping, unwrapped like t32). Untimed words get their arrival time.

faery's own UDP decoder (``faery.events_stream_from_udp``) polls a queue with 20 ms sleeps, keeps
no drop counts and silently drops packets, so the receiver in ``udp.py`` is our own; the record
layouts are faery's (checked against faery's encoder in the tests).

Decoders are small stateful objects (timestamp unwrapping) whose ``decode`` raises ``PacketError``
for a malformed payload and leaves the state unchanged in that case.
"""

from __future__ import annotations

import numba
import numpy as np
from faery import EVENTS_DTYPE as T64_DTYPE

from eventsnn.events import EVENT_DTYPE, EventsError

T32_DTYPE = np.dtype([("t", "<u4"), ("x", "<u2"), ("y_on", "<u2")])
"""faery's ``t32_x16_y15_on1`` record."""

_INT16_MAX = np.iinfo(np.int16).max
_WRAP_32 = 1 << 32
_SPIF_UNTIMED = np.uint32(1 << 31)


class PacketError(EventsError):
    """A malformed packet: wrong length or impossible field values. Counted and skipped."""


@numba.njit(cache=True, nogil=True)
def _decode_t64(raw, on, out):
    """Copy t64 records into the project's dtype in one pass; the number of impossible records."""
    bad = 0
    for i in range(len(raw)):
        t, x, y, polarity = raw[i]["t"], raw[i]["x"], raw[i]["y"], on[i]
        if t > np.uint64(0x7FFFFFFFFFFFFFFF) or x > 0x7FFF or y > 0x7FFF or polarity > 1:
            bad += 1
        out[i]["t"] = np.int64(t)
        out[i]["x"] = np.int16(x)
        out[i]["y"] = np.int16(y)
        out[i]["p"] = polarity == 1
    return bad


def _events_from_columns(x: np.ndarray, y: np.ndarray, t: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Pack decoded columns into the project's event dtype; int16 must hold the coordinates."""
    if x.size and max(int(x.max()), int(y.max())) > _INT16_MAX:
        raise PacketError(f"coordinate above {_INT16_MAX}: x max {x.max()}, y max {y.max()}")
    events = np.empty(t.size, dtype=EVENT_DTYPE)
    events["x"] = x
    events["y"] = y
    events["t"] = t
    events["p"] = p
    return events


def _check_length(payload_size: int, record_size: int, name: str) -> None:
    if payload_size % record_size:
        raise PacketError(
            f"{name} packet of {payload_size} bytes is not a whole number of "
            f"{record_size}-byte records"
        )


class Unwrapper32:
    """Unwraps 32-bit wrapping timestamps into int64 microseconds, carried across packets.

    A backwards jump of more than 2**31 us is a wrap-around (as faery's decoder assumes); smaller
    backwards steps are kept as they are (late events, for the binner to count).
    """

    def __init__(self) -> None:
        self.offset = 0
        self.previous: int | None = None

    def peek(self, t32: np.ndarray) -> tuple[np.ndarray, int, int | None]:
        """Unwrapped int64 times and the state after them, without committing it."""
        t = t32.astype(np.int64)
        if t.size == 0:
            return t, self.offset, self.previous
        previous = t[0] if self.previous is None else self.previous
        steps = np.diff(t, prepend=previous)
        wraps = np.cumsum(steps < -(1 << 31), dtype=np.int64)
        t += self.offset + wraps * _WRAP_32
        return t, self.offset + int(wraps[-1]) * _WRAP_32, int(t32[-1])

    def commit(self, offset: int, previous: int | None) -> None:
        """Keep the state that ``peek`` returned once the packet is known good."""
        self.offset, self.previous = offset, previous


class _FixedRecords:
    """Formats where every record of ``record_size`` bytes is one event."""

    record_size: int

    def count(self, payload: bytes | memoryview) -> int:
        """Number of events in a well-formed payload."""
        return len(payload) // self.record_size


class T64Decoder(_FixedRecords):
    """faery's ``t64_x16_y16_on8`` records."""

    name = "t64_x16_y16_on8"
    record_size = T64_DTYPE.itemsize

    def decode(self, payload: bytes | memoryview, arrival_us: int = 0) -> np.ndarray:
        """Events of one payload (one or more whole packets); PacketError when malformed."""
        _check_length(len(payload), self.record_size, self.name)
        raw = np.frombuffer(payload, dtype=T64_DTYPE)
        on = np.frombuffer(payload, dtype=np.uint8).reshape(-1, self.record_size)[:, -1]
        events = np.empty(len(raw), dtype=EVENT_DTYPE)
        if _decode_t64(raw, on, events):
            self._explain(raw, on)
        return events

    def _explain(self, raw: np.ndarray, on: np.ndarray) -> None:
        """Raise a PacketError that says what is impossible in the records."""
        if int(on.max()) > 1:
            raise PacketError(f"{self.name} polarity byte {int(on.max())} is neither 0 nor 1")
        if int(raw["t"].max()) > np.iinfo(np.int64).max:
            raise PacketError(f"{self.name} timestamp {int(raw['t'].max())} does not fit int64")
        _events_from_columns(raw["x"], raw["y"], raw["t"][:0], raw["x"][:0])


class T32Decoder(_FixedRecords):
    """faery's ``t32_x16_y15_on1`` records, with timestamps unwrapped across packets."""

    name = "t32_x16_y15_on1"
    record_size = T32_DTYPE.itemsize

    def __init__(self) -> None:
        self.unwrapper = Unwrapper32()

    def decode(self, payload: bytes | memoryview, arrival_us: int = 0) -> np.ndarray:
        """Events of one payload (one or more whole packets); PacketError when malformed."""
        _check_length(len(payload), self.record_size, self.name)
        raw = np.frombuffer(payload, dtype=T32_DTYPE)
        t, offset, previous = self.unwrapper.peek(raw["t"])
        events = _events_from_columns(raw["x"], raw["y_on"] >> 1, t, (raw["y_on"] & 1).astype(bool))
        self.unwrapper.commit(offset, previous)
        return events


class SpifDecoder:
    """aestream's SPIF-style 32-bit words, timed (word pairs) or untimed (arrival time)."""

    name = "spif"
    record_size = 4

    def __init__(self) -> None:
        self.unwrapper = Unwrapper32()

    def count(self, payload: bytes | memoryview) -> int:
        """Number of events in a well-formed payload (a timed event takes two words)."""
        untimed = len(payload) >= 4 and payload[3] & 0x80
        return len(payload) // (4 if untimed else 8)

    def decode(self, payload: bytes | memoryview, arrival_us: int = 0) -> np.ndarray:
        """Events of one payload; untimed words are stamped with ``arrival_us``."""
        _check_length(len(payload), self.record_size, self.name)
        words = np.frombuffer(payload, dtype="<u4")
        if words.size == 0:
            return np.empty(0, dtype=EVENT_DTYPE)
        untimed = (words[0] & _SPIF_UNTIMED) != 0
        if untimed:
            if not np.all(words & _SPIF_UNTIMED):
                raise PacketError("spif packet mixes untimed words with timed ones")
            t = np.full(words.size, arrival_us, dtype=np.int64)
            offset, previous = self.unwrapper.offset, self.unwrapper.previous
        else:
            if words.size % 2:
                raise PacketError(f"timed spif packet has an odd number of words ({words.size})")
            timestamps = words[1::2]
            words = words[0::2]
            if np.any(words & _SPIF_UNTIMED):
                raise PacketError("spif packet mixes untimed words with timed ones")
            t, offset, previous = self.unwrapper.peek(timestamps)
        x = (words >> 16) & 0x7FFF
        y = words & 0x7FFF
        p = ((words >> 15) & 1).astype(bool)
        events = _events_from_columns(x, y, t, p)
        self.unwrapper.commit(offset, previous)
        return events


DECODERS = {cls.name: cls for cls in (T64Decoder, T32Decoder, SpifDecoder)}
"""Packet format name -> decoder class."""


def make_decoder(name: str) -> T64Decoder | T32Decoder | SpifDecoder:
    """A fresh decoder for a packet format name; EventsError naming the known ones otherwise."""
    try:
        return DECODERS[name]()
    except KeyError:
        raise EventsError(f"unknown packet format {name!r}; known: {sorted(DECODERS)}") from None
