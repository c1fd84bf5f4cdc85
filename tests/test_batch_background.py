"""`read_ahead`: sources read by background threads, each source's items in order."""

from __future__ import annotations

import threading
import time

import pytest

from eventsnn.inference.background import read_ahead


def numbered(source: int, count: int, delay: float = 0.0):
    for index in range(count):
        if delay:
            time.sleep(delay)
        yield source, index


@pytest.mark.parametrize("threads", [1, 2, 5])
def test_every_item_once_and_each_source_in_order(threads):
    sources = [numbered(s, count) for s, count in enumerate([7, 0, 30, 1, 12])]
    items = list(read_ahead(sources, threads, depth=3))
    assert sorted(items) == [
        (s, i) for s, count in enumerate([7, 0, 30, 1, 12]) for i in range(count)
    ]
    for source in range(5):
        assert [i for s, i in items if s == source] == sorted(i for s, i in items if s == source)


def test_one_thread_keeps_the_order_of_the_sources():
    items = list(read_ahead([numbered(s, 4) for s in range(3)], threads=1, depth=2))
    assert items == [(s, i) for s in range(3) for i in range(4)]


def test_two_threads_read_two_sources_at_once():
    inside = threading.Barrier(2, timeout=10)  # passes only when both sources run at once

    def meeting(source: int):
        inside.wait()
        yield from numbered(source, 5)

    items = list(read_ahead([meeting(s) for s in range(2)], threads=2, depth=2))
    assert sorted(items) == [(s, i) for s in range(2) for i in range(5)]


def test_a_failing_source_raises_in_the_consumer_after_its_items():
    def failing():
        yield "a"
        yield "b"
        raise OSError("disk gone")

    received = []
    with pytest.raises(OSError, match="disk gone"):
        for item in read_ahead([failing()], threads=1, depth=1):
            received.append(item)
    assert received == ["a", "b"]


def test_closing_the_consumer_stops_the_threads():
    def endless():
        index = 0
        while True:
            yield index
            index += 1

    items = read_ahead([endless()], threads=1, depth=2)
    assert [next(items) for _ in range(3)] == [0, 1, 2]
    items.close()
    deadline = time.monotonic() + 2
    while any(t.name.startswith("eventsnn-read") for t in threading.enumerate()):
        assert time.monotonic() < deadline, "the reader thread did not stop"
        time.sleep(0.01)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="threads >= 1"):
        list(read_ahead([], threads=0, depth=1))
