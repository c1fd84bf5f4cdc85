"""UDP receiver for event packets (faery's two formats, aestream's SPIF words).

The socket gets a large receive buffer (the kernel queue is the stream's buffer while the model
runs), is drained in batches without blocking, and reports packets the kernel dropped because that
buffer was full (Linux ``SO_RXQ_OVFL``) instead of hiding them. A malformed packet is counted and
skipped. Each datagram's arrival is the kernel's receive time (``SO_TIMESTAMPNS``), so latency
counts the time spent queued in the kernel. Iteration yields one ``Packet`` per drained batch, or
an empty one after ``poll_s`` seconds without data; it ends after ``idle_stop_s`` seconds without
data, if set, or on ``stop()``.
"""

from __future__ import annotations

import errno
import os
import select
import socket
import struct
import sys
import time
from collections.abc import Iterator

import numpy as np

from eventsnn.events import EVENT_DTYPE, join_events
from eventsnn.streaming.packets import PacketError, make_decoder
from eventsnn.streaming.sources import Packet, SourceStats, StreamError

SO_RXQ_OVFL = getattr(socket, "SO_RXQ_OVFL", 40)
"""Linux socket option: each datagram carries the socket's cumulative drop counter."""
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
"""Linux socket option: each datagram carries the kernel's receive time (CLOCK_REALTIME)."""
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)
"""Linux socket option: a receive buffer above rmem_max, allowed with CAP_NET_ADMIN."""
MAX_DATAGRAM = 65536


def parse_udp_address(text: str) -> tuple[str, int]:
    """``udp://HOST:PORT`` or ``HOST:PORT`` -> (host, port); StreamError naming the text."""
    address = text.removeprefix("udp://")
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise StreamError(f"bad UDP address {text!r}: expected udp://HOST:PORT")
    return host.strip("[]"), int(port)


def _set_receive_buffer(sock: socket.socket, size: int) -> int:
    """Ask for a receive buffer of ``size`` bytes (forced past rmem_max when allowed)."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, size)
    except OSError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
    return sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)


def _proc_drops(sock: socket.socket) -> int | None:
    """The socket's drop counter from /proc/net/udp (Linux), or None where it cannot be read."""
    inode = str(os.fstat(sock.fileno()).st_ino)
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            with open(table) as lines:
                for line in lines:
                    fields = line.split()
                    if len(fields) > 12 and fields[9] == inode:
                        return int(fields[-1])
        except OSError:
            continue
    return None


class UdpSource:
    """Receives event packets on a UDP address; see the module docstring."""

    def __init__(
        self,
        address: str | tuple[str, int],
        format: str = "t64_x16_y16_on8",
        buffer_bytes: int = 64 << 20,
        poll_s: float = 0.05,
        idle_stop_s: float | None = None,
        batch_bytes: int = 1 << 20,
    ) -> None:
        host, port = parse_udp_address(address) if isinstance(address, str) else address
        self.decoder = make_decoder(format)
        self.poll_s = poll_s
        self.idle_stop_s = idle_stop_s
        self.stats = SourceStats()
        self._stopping = False
        self._buffer = bytearray(batch_bytes + MAX_DATAGRAM)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.socket = socket.socket(family, socket.SOCK_DGRAM)
        try:
            self.stats.socket_buffer_bytes = _set_receive_buffer(self.socket, buffer_bytes)
            if sys.platform.startswith("linux"):
                self.socket.setsockopt(socket.SOL_SOCKET, SO_RXQ_OVFL, 1)
                self.socket.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            self.socket.bind((host, port))
        except OSError as error:
            self.socket.close()
            if error.errno == errno.EADDRINUSE:
                raise StreamError(
                    f"udp://{host}:{port} is already in use: another program is bound to it; "
                    "stop it or choose another port"
                ) from None
            raise StreamError(f"cannot listen on udp://{host}:{port}: {error.strerror}") from None
        self.socket.setblocking(False)
        self.address = self.socket.getsockname()[:2]

    def stop(self) -> None:
        """Ask the iteration to end after the current batch (safe from another thread)."""
        self._stopping = True

    def close(self) -> None:
        """Release the socket (the kernel drop count is read one last time first)."""
        if self.socket.fileno() != -1:
            self.refresh_kernel_drops()
        self.socket.close()

    def refresh_kernel_drops(self) -> None:
        """Update the kernel drop count now (datagrams carry it only once more arrive)."""
        drops = _proc_drops(self.socket)
        if drops is not None:
            self.stats.kernel_dropped_packets = max(self.stats.kernel_dropped_packets, drops)

    def __enter__(self) -> UdpSource:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[Packet]:
        poller = select.poll()
        poller.register(self.socket, select.POLLIN)
        last_data = time.monotonic()
        start_ns = time.time_ns()
        while not self._stopping:
            if not poller.poll(self.poll_s * 1000):
                self.refresh_kernel_drops()
                if self.idle_stop_s is not None and time.monotonic() - last_data > self.idle_stop_s:
                    return
                yield Packet(np.empty(0, dtype=EVENT_DTYPE), time.time_ns())
                continue
            last_data = time.monotonic()
            data, sizes, stamps = self._drain()
            packet = self._decode(data, sizes, stamps, start_ns)
            self.stats.events += len(packet.events)
            yield packet

    def _drain(self) -> tuple[memoryview, list[int], list[int]]:
        """Receive every queued datagram (up to the batch size) back to back into the buffer.

        Returns the filled part of the buffer, the sizes of the well-formed datagrams in it and
        their kernel receive times; truncated datagrams and ones that are not whole records are
        counted and left out.
        """
        view = memoryview(self._buffer)
        record_size = self.decoder.record_size
        ancillary_size = socket.CMSG_SPACE(4) + socket.CMSG_SPACE(16)
        sizes: list[int] = []
        stamps: list[int] = []
        offset = 0
        while offset + MAX_DATAGRAM <= len(view):
            try:
                size, ancillary, flags, _ = self.socket.recvmsg_into(
                    [view[offset : offset + MAX_DATAGRAM]], ancillary_size
                )
            except BlockingIOError:
                break
            self.stats.packets += 1
            stamp = None
            for level, kind, data in ancillary:
                if level != socket.SOL_SOCKET:
                    continue
                if kind == SO_RXQ_OVFL and len(data) >= 4:
                    self.stats.kernel_dropped_packets = struct.unpack("=I", data[:4])[0]
                elif kind == SO_TIMESTAMPNS and len(data) >= 16:
                    seconds, nanoseconds = struct.unpack("=qq", data[:16])
                    stamp = seconds * 1_000_000_000 + nanoseconds
            if flags & socket.MSG_TRUNC or size % record_size:
                self.stats.malformed_packets += 1
                continue
            sizes.append(size)
            stamps.append(time.time_ns() if stamp is None else stamp)
            offset += size
        return view[:offset], sizes, stamps

    def _decode(
        self, data: memoryview, sizes: list[int], stamps: list[int], start_ns: int
    ) -> Packet:
        """Decode a batch at once; on a bad packet, decode one by one to skip only the bad ones.

        Untimed SPIF words get the batch's first receive time (us since the source started).
        """
        if not sizes:
            return Packet(np.empty(0, dtype=EVENT_DTYPE), time.time_ns())
        arrival_us = (stamps[0] - start_ns) // 1000
        bounds = np.cumsum([0, *sizes]).tolist()
        payloads = [data[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
        try:
            events = self.decoder.decode(data, arrival_us)
            kept = list(zip(payloads, stamps, strict=True))
        except PacketError:
            good, kept = [], []
            for payload, stamp in zip(payloads, stamps, strict=True):
                try:
                    good.append(self.decoder.decode(payload, arrival_us))
                    kept.append((payload, stamp))
                except PacketError:
                    self.stats.malformed_packets += 1
            events = join_events(good)
        counts = [self.decoder.count(payload) for payload, _ in kept]
        arrival = np.repeat(np.array([stamp for _, stamp in kept], dtype=np.int64), counts)
        return Packet(events, arrival)
