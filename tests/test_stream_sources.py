"""Stream sources: packet decoders against faery's encoder, the UDP receiver on loopback."""

from __future__ import annotations

import socket
import time

import faery
import numpy as np
import pytest

from eventsnn.events import EVENT_DTYPE, EventsError, make_events
from eventsnn.streaming.packets import PacketError, T32Decoder, T64Decoder, make_decoder
from eventsnn.streaming.sources import IteratorSource, StreamError
from eventsnn.streaming.udp import UdpSource, parse_udp_address


def random_events(n: int, t0: int = 0, seed: int = 0, size: int = 34) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = t0 + np.sort(rng.integers(0, 50_000, n))
    return make_events(rng.integers(0, size, n), rng.integers(0, size, n), t, rng.integers(0, 2, n))


def to_faery(events: np.ndarray) -> np.ndarray:
    out = np.zeros(len(events), dtype=faery.EVENTS_DTYPE)
    for name in ("t", "x", "y"):
        out[name] = events[name]
    out["on"] = events["p"]
    return out


def spif_words(events: np.ndarray, timed: bool) -> bytes:
    """aestream's UDP encoding, written from its documented bit layout."""
    words = []
    for x, y, t, p in zip(events["x"], events["y"], events["t"], events["p"], strict=True):
        word = (int(x) << 16) | (int(p) << 15) | int(y)
        if timed:
            words += [word, int(t) & 0xFFFFFFFF]
        else:
            words.append(word | (1 << 31))
    return np.array(words, dtype="<u4").tobytes()


def receive_all(source: UdpSource) -> np.ndarray:
    chunks = [packet.events for packet in source]
    return np.concatenate(chunks) if chunks else np.empty(0, EVENT_DTYPE)


@pytest.fixture
def receiver():
    created = []

    def make(**kwargs) -> UdpSource:
        source = UdpSource(("127.0.0.1", 0), idle_stop_s=0.3, poll_s=0.02, **kwargs)
        created.append(source)
        return source

    yield make
    for source in created:
        source.close()


@pytest.mark.parametrize("udp_format", ["t64_x16_y16_on8", "t32_x16_y15_on1"])
def test_udp_receives_exactly_what_faery_sends(receiver, udp_format):
    events = random_events(2500, t0=(1 << 32) - 20_000)  # crosses the 32-bit wrap-around
    source = receiver(format=udp_format)
    before = time.time_ns()
    faery.events_stream_from_array(to_faery(events), dimensions=(34, 34)).to_udp(
        source.address, events_per_packet=100, format=udp_format
    )
    after = time.time_ns()
    packets = list(source)
    received = np.concatenate([packet.events for packet in packets])
    arrival = np.concatenate([packet.arrival_ns for packet in packets if len(packet.events)])
    np.testing.assert_array_equal(received, events)
    # kernel receive times: one per event, in sending order, while faery was sending (give or
    # take 5 ms: the kernel's stamps and time.time_ns read the wall clock by different paths,
    # which a VM's clock adjustments can set apart by a fraction of a millisecond)
    assert len(arrival) == len(events)
    assert np.all(np.diff(arrival) >= 0)
    slack = 5_000_000
    assert before - slack <= arrival[0] and arrival[-1] <= after + slack
    assert source.stats.packets == 25
    assert source.stats.events == 2500
    assert source.stats.malformed_packets == 0


def test_malformed_packets_are_counted_and_skipped(receiver):
    events = random_events(30)
    good = to_faery(events).tobytes()
    bad_polarity = bytearray(to_faery(events[:2]).tobytes())
    bad_polarity[12] = 7  # the polarity byte of the first record
    source = receiver()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        sender.sendto(good[: 13 * 10], source.address)
        sender.sendto(b"\x01\x02\x03", source.address)  # not a whole record
        sender.sendto(bytes(bad_polarity), source.address)
        sender.sendto(good[13 * 10 :], source.address)
    received = receive_all(source)
    np.testing.assert_array_equal(received, events)
    assert source.stats.packets == 4
    assert source.stats.malformed_packets == 2


def test_spif_timed_words_decode_with_wrap_around(receiver):
    events = random_events(300, t0=(1 << 32) - 10_000)
    source = receiver(format="spif")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        for start in range(0, 300, 64):
            sender.sendto(spif_words(events[start : start + 64], timed=True), source.address)
    np.testing.assert_array_equal(receive_all(source), events)


def test_spif_untimed_words_get_nondecreasing_arrival_times(receiver):
    events = random_events(50)
    source = receiver(format="spif")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        sender.sendto(spif_words(events[:20], timed=False), source.address)
        sender.sendto(spif_words(events[20:], timed=False), source.address)
    received = receive_all(source)
    for name in ("x", "y", "p"):
        np.testing.assert_array_equal(received[name], events[name])
    assert np.all(np.diff(received["t"]) >= 0)


def test_spif_rejects_mixed_and_odd_packets():
    decoder = make_decoder("spif")
    with pytest.raises(PacketError, match="mixes untimed"):
        decoder.decode(np.array([1 << 31, 5], dtype="<u4").tobytes())
    with pytest.raises(PacketError, match="odd number"):
        decoder.decode(np.array([5, 10, 6], dtype="<u4").tobytes())


def test_t32_state_is_unchanged_by_a_bad_packet():
    decoder = T32Decoder()
    record = [("t", "<u4"), ("x", "<u2"), ("y", "<u2")]
    first = np.array([(0xFFFFFF00, 1, 2 << 1 | 1)], dtype=record)
    decoder.decode(first.tobytes())
    with pytest.raises(PacketError):
        decoder.decode(b"\x00" * 7)
    after_wrap = np.array([(0x10, 3, 4 << 1)], dtype=first.dtype)
    events = decoder.decode(after_wrap.tobytes())
    assert events["t"].tolist() == [(1 << 32) + 0x10]
    assert (events["x"][0], events["y"][0], events["p"][0]) == (3, 4, False)


def test_t64_rejects_coordinates_beyond_int16():
    record = np.zeros(1, dtype=faery.EVENTS_DTYPE)
    record["x"] = 40_000
    with pytest.raises(PacketError, match="coordinate above 32767"):
        T64Decoder().decode(record.tobytes())


def test_kernel_drops_are_reported_not_hidden(receiver):
    source = receiver(buffer_bytes=4096)  # the kernel keeps only a few packets
    payload = to_faery(random_events(100)).tobytes()
    sent = 400
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        for _ in range(sent):
            sender.sendto(payload, source.address)
    receive_all(source)
    assert source.stats.kernel_dropped_packets > 0
    assert source.stats.packets + source.stats.kernel_dropped_packets == sent


def test_port_in_use_is_a_clear_error(receiver):
    source = receiver()
    with pytest.raises(StreamError, match=r"udp://127\.0\.0\.1:\d+ is already in use"):
        UdpSource(source.address)


@pytest.mark.parametrize("text", ["127.0.0.1", "udp://:80", "udp://host:port", "h:70000"])
def test_bad_udp_address_names_the_text(text):
    with pytest.raises(StreamError, match="bad UDP address"):
        parse_udp_address(text)


def test_unknown_format_names_the_known_ones():
    with pytest.raises(EventsError, match="t64_x16_y16_on8"):
        make_decoder("evt5")


def test_iterator_source_validates_each_chunk():
    good = random_events(10)
    unsorted = good[::-1].copy()
    source = IteratorSource([good, unsorted])
    with pytest.raises(EventsError, match="chunk 1 of the iterator"):
        list(source)  # noqa: B018
    assert source.stats.events == 10
