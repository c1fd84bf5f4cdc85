"""HDF5 columns decoded chunk by chunk (zlib-ng, shuffle) equal what h5py reads, in every layout."""

from __future__ import annotations

import ctypes
import glob
import os
import zlib
from pathlib import Path

import h5py
import numpy as np
import pytest

from eventsnn.events import EventsError, make_events, read, write
from eventsnn.events.formats import hdf5_chunks
from eventsnn.events.formats.base import aligned_blocks
from eventsnn.events.formats.hdf5_chunks import (
    chunk_pipeline,
    decoding_threads,
    read_columns,
    unshuffle,
)

CHUNK = 1000


def _column(path, **options) -> h5py.Dataset:
    """A 1-D int64 column of 10,500 values (10.5 chunks) written by h5py with `options`."""
    values = np.random.default_rng(0).integers(-(2**40), 2**40, 10_500)
    with h5py.File(path, "w") as f:
        f.create_dataset("c", data=values, **options)
    return values


def _read(path, lo: int, hi: int) -> np.ndarray:
    out = np.empty(hi - lo, dtype=np.int64)
    with h5py.File(path, "r") as f:
        read_columns([(f["c"], out)], lo, hi)
    return out


RANGES = [(0, 10_500), (0, 1), (999, 1001), (1000, 2000), (3_456, 9_999), (10_400, 10_500)]


@pytest.mark.parametrize("threads", [1, 3])
@pytest.mark.parametrize(
    "options, decoded_here",
    [
        ({"chunks": (CHUNK,), "compression": "gzip", "shuffle": True}, True),
        ({"chunks": (CHUNK,), "compression": "gzip"}, True),
        ({"chunks": (CHUNK,), "shuffle": True}, True),
        ({"chunks": (CHUNK,)}, True),
        ({}, False),  # contiguous
        ({"chunks": (CHUNK,), "compression": "lzf"}, False),
        ({"chunks": (CHUNK,), "compression": "gzip", "fletcher32": True}, False),
    ],
)
def test_every_range_equals_h5py(tmp_path, options, decoded_here, threads):
    path = tmp_path / "c.h5"
    values = _column(path, **options)
    with h5py.File(path, "r") as f:
        assert (chunk_pipeline(f["c"]) is not None) == decoded_here
    with decoding_threads(threads):
        for lo, hi in RANGES:
            np.testing.assert_array_equal(_read(path, lo, hi), values[lo:hi])


def test_big_endian_and_unallocated_chunks_are_left_to_h5py(tmp_path):
    path = tmp_path / "c.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("big", data=np.arange(5000, dtype=">i8"), chunks=(CHUNK,))
        sparse = f.create_dataset("sparse", shape=(5000,), dtype="i8", chunks=(CHUNK,), fillvalue=7)
        sparse[2500:2600] = 1  # only chunk 2 is ever written
    with h5py.File(path, "r") as f:
        assert chunk_pipeline(f["big"]) is None and chunk_pipeline(f["sparse"]) is None
        big, sparse = np.empty(4000, np.int64), np.empty(4000, np.int64)
        read_columns([(f["big"], big), (f["sparse"], sparse)], 1000, 5000)
        np.testing.assert_array_equal(big, np.arange(1000, 5000))
        assert (sparse[1500:1600] == 1).all() and (sparse[:1500] == 7).all()


def _raw_chunk(values: np.ndarray, shuffle: bool, deflate: bool) -> bytes:
    data = values.view(np.uint8).reshape(-1, values.itemsize)
    data = data.T.tobytes() if shuffle else data.tobytes()
    return zlib.compress(data) if deflate else data


def test_a_chunk_whose_filters_were_skipped_reads_back(tmp_path):
    """HDF5 may store a chunk without an optional filter (its bit set in the chunk's mask)."""
    path = tmp_path / "c.h5"
    values = np.arange(3 * CHUNK, dtype=np.int64) * 1_000_003
    with h5py.File(path, "w") as f:
        column = f.create_dataset(
            "c", shape=values.shape, dtype="i8", chunks=(CHUNK,), compression="gzip", shuffle=True
        )
        column[:] = values
        middle = values[CHUNK : 2 * CHUNK]
        column.id.write_direct_chunk((CHUNK,), _raw_chunk(middle, True, False), filter_mask=0b10)
        last = values[2 * CHUNK :]
        column.id.write_direct_chunk((2 * CHUNK,), _raw_chunk(last, False, True), filter_mask=0b01)
    with h5py.File(path, "r") as f:
        np.testing.assert_array_equal(f["c"][:], values)  # h5py agrees on what the file holds
    np.testing.assert_array_equal(_read(path, 0, 3 * CHUNK), values)


def _events(n: int) -> np.ndarray:
    rng = np.random.default_rng(1)
    t = np.sort(rng.integers(0, 10**9, n))
    return make_events(rng.integers(0, 640, n), rng.integers(0, 480, n), t, rng.integers(0, 2, n))


@pytest.mark.parametrize("threads", [1, 2])
def test_event_files_read_the_same_whole_by_range_and_in_packets(tmp_path, threads):
    """Our writer's files (65536-event chunks) across packet and chunk boundaries."""
    events = _events(300_001)
    path = tmp_path / "e.h5"
    write(path, events, (640, 480, 2))
    t_start, t_stop = int(events["t"][70_000]), int(events["t"][250_000])
    with decoding_threads(threads):
        np.testing.assert_array_equal(read(path).events, events)
        inside = read(path, t_start=t_start, t_stop=t_stop).events
    expected = events[(events["t"] >= t_start) & (events["t"] < t_stop)]
    np.testing.assert_array_equal(inside, expected)


def test_polarities_other_than_0_and_1_read_as_on_where_non_zero(tmp_path):
    events = _events(140_000)  # two whole chunks and a partial one
    path = tmp_path / "e.h5"
    write(path, events, (640, 480, 2))
    stored = np.where(events["p"], np.uint8(7), np.uint8(0))
    with h5py.File(path, "r+") as f:
        f["events/p"][:] = stored
    np.testing.assert_array_equal(read(path).events, events)


def test_a_corrupt_chunk_is_an_error_naming_the_file(tmp_path):
    path = tmp_path / "e.h5"
    write(path, _events(200_000), (640, 480, 2))  # the chunk at 65536 is whole
    with h5py.File(path, "r+") as f:
        f["events/t"].id.write_direct_chunk((65536,), b"\x78\x9c not deflate data")
    with pytest.raises(EventsError, match=r"e\.h5: cannot read: /events/t: the chunk at element "
                       r"65536 does not inflate"):  # fmt: skip
        read(path)


def test_decoding_threads_must_be_positive():
    with pytest.raises(ValueError, match="threads must be >= 1"), decoding_threads(0):
        pass


def test_packets_start_on_multiples_so_no_chunk_is_decoded_twice():
    assert list(aligned_blocks(1500, 4200, 1000)) == [
        (1500, 2000),
        (2000, 3000),
        (3000, 4000),
        (4000, 4200),
    ]
    assert list(aligned_blocks(2000, 3000, 1000)) == [(2000, 3000)]
    assert list(aligned_blocks(5, 5, 1000)) == []


@pytest.mark.parametrize("itemsize", [2, 3, 4, 8])
@pytest.mark.parametrize("n", [8, 24, 65536, 13])
def test_unshuffle_inverts_the_shuffle_filter(itemsize, n):
    values = np.random.default_rng(n).integers(0, 256, n * itemsize).astype(np.uint8)
    shuffled = values.reshape(n, itemsize).T.reshape(-1)  # byte j of every value together
    np.testing.assert_array_equal(unshuffle(shuffled, itemsize), values)


def test_types_stored_otherwise_than_they_read_are_left_to_h5py(tmp_path):
    """A 12-bit integer at bit offset 2 reads as int16 only after HDF5 converts it."""
    path = tmp_path / "c.h5"
    values = np.random.default_rng(2).integers(-2000, 2000, 2500).astype(np.int16)
    twelve_bits = h5py.h5t.STD_I16LE.copy()
    twelve_bits.set_precision(12)
    twelve_bits.set_offset(2)
    plist = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    plist.set_chunk((CHUNK,))
    plist.set_shuffle()
    plist.set_deflate(4)
    with h5py.File(path, "w") as f:
        space = h5py.h5s.create_simple(values.shape)
        h5py.h5d.create(f.id, b"c", twelve_bits, space, dcpl=plist)
        f["c"][:] = values
    with h5py.File(path, "r") as f:
        assert chunk_pipeline(f["c"]) is None
        out = np.empty(2500, np.int16)
        read_columns([(f["c"], out)], 0, 2500)
    np.testing.assert_array_equal(out, values)


def _libhdf5() -> ctypes.CDLL:
    """h5py's own HDF5 library (pip wheels ship it in h5py.libs), for options h5py lacks."""
    found = glob.glob(str(Path(h5py.__file__).parent.parent / "h5py.libs" / "libhdf5-*.so*"))
    if not found:
        pytest.skip("h5py's HDF5 library is not a file of its wheel here")
    return ctypes.CDLL(found[0])


@pytest.mark.parametrize("deflate", [False, True])
def test_a_partial_last_chunk_stored_unfiltered_reads_back(tmp_path, deflate):
    """H5D_CHUNK_DONT_FILTER_PARTIAL_CHUNKS: the edge chunk has no filters and a zero mask."""
    library = _libhdf5()
    library.H5Pset_chunk_opts.argtypes = [ctypes.c_int64, ctypes.c_uint]
    values = np.arange(2500, dtype=np.int64) * 1_000_003
    plist = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    plist.set_chunk((CHUNK,))
    plist.set_shuffle()
    if deflate:
        plist.set_deflate(4)
    assert library.H5Pset_chunk_opts(plist.id, 0x0002) >= 0
    path = tmp_path / "c.h5"
    with h5py.File(path, "w") as f:
        space = h5py.h5s.create_simple(values.shape)
        h5py.h5d.create(f.id, b"c", h5py.h5t.STD_I64LE, space, dcpl=plist)
        f["c"][:] = values
        assert f["c"].id.read_direct_chunk((2000,))[0] == 0  # nothing says it is unfiltered
    for lo, hi in [(0, 2500), (1999, 2001), (2100, 2400)]:
        np.testing.assert_array_equal(_read(path, lo, hi), values[lo:hi])


def test_one_pool_a_process_remade_in_a_forked_child(tmp_path):
    path = tmp_path / "e.h5"
    events = _events(200_000)
    write(path, events, (640, 480, 2))
    with decoding_threads(2):
        np.testing.assert_array_equal(read(path).events, events)
    two_threads = hdf5_chunks._pool
    with decoding_threads(3):
        np.testing.assert_array_equal(read(path).events, events)
        pid = os.fork()
        if pid == 0:  # the child: the parent's pool has no threads here
            os._exit(0 if np.array_equal(read(path).events, events) else 1)
        assert os.waitpid(pid, 0)[1] == 0
    assert two_threads._shutdown and hdf5_chunks._pool_owner == (os.getpid(), 3)
