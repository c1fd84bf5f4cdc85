"""Read a chunked 1-D HDF5 column by decoding its chunks here (deflate with zlib-ng, shuffle).

Through h5py, HDF5 inflates with the system zlib while holding h5py's global lock: reader
threads cannot decode in parallel, and zlib-ng inflates about 1.7x faster than zlib. When a
column's filter pipeline is shuffle and/or deflate and nothing else (what `write_hdf5` and most
tools write), each chunk's stored bytes are fetched with `read_direct_chunk` (a short call under
the lock) and the filters are undone here, outside the lock and the GIL. Any other layout
(contiguous, lzf, checksums, big-endian, types that HDF5 converts on reading, unallocated
chunks) is read by h5py as before, and so is a partial last chunk, which HDF5 may store
unfiltered (H5D_CHUNK_DONT_FILTER_PARTIAL_CHUNKS) with nothing in its filter mask to say so.

Chunks are decoded in the reading thread, or on `set_decoding_threads(n)` threads: a
process-wide setting like torch's thread count, for programs (`eventsnn batch --readers`) that
give reading more than one core.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass

import h5py
import numba
import numpy as np
from zlib_ng import zlib_ng

SHUFFLE = h5py.h5z.FILTER_SHUFFLE
DEFLATE = h5py.h5z.FILTER_DEFLATE


@dataclass(frozen=True)
class ChunkPipeline:
    """How a column's chunks are stored: elements per chunk and its filters' positions."""

    chunk: int
    shuffle_bit: int | None
    """Bit of the shuffle filter in a chunk's filter mask (set: skipped), None without shuffle."""
    deflate_bit: int | None
    """The same for deflate."""


def chunk_pipeline(column: h5py.Dataset) -> ChunkPipeline | None:
    """The column's chunk layout when it can be decoded here, else None (h5py reads it)."""
    if column.chunks is None or column.ndim != 1 or column.dtype.kind not in "biuf":
        return None
    if column.dtype.byteorder == ">" or column.id.get_num_chunks() != _chunks_covering(column):
        return None
    if not column.id.get_type().equal(h5py.h5t.py_create(column.dtype, logical=True)):
        return None  # stored in another layout (custom precision or offset) than it reads as
    plist = column.id.get_create_plist()
    filters = [plist.get_filter(i)[0] for i in range(plist.get_nfilters())]
    if any(code not in (SHUFFLE, DEFLATE) for code in filters) or len(set(filters)) < len(filters):
        return None
    if filters == [DEFLATE, SHUFFLE]:  # shuffled after compression: never written in practice
        return None
    positions = {code: bit for bit, code in enumerate(filters)}
    return ChunkPipeline(column.chunks[0], positions.get(SHUFFLE), positions.get(DEFLATE))


def _chunks_covering(column: h5py.Dataset) -> int:
    return -(-column.shape[0] // column.chunks[0])


def _whole_chunks_end(column: h5py.Dataset, pipeline: ChunkPipeline) -> int:
    """Where the column's whole chunks end (the partial last chunk, if any, is h5py's)."""
    return column.shape[0] - column.shape[0] % pipeline.chunk


Target = tuple[h5py.Dataset, np.ndarray]
"""A column and the array its elements [lo, hi) go to."""


def read_columns(targets: Sequence[Target], lo: int, hi: int) -> None:
    """out[:] = column[lo:hi] for every (column, out): chunks decoded here where possible."""
    jobs = []
    for column, out in targets:
        pipeline = chunk_pipeline(column)
        whole = lo if pipeline is None else max(lo, min(hi, _whole_chunks_end(column, pipeline)))
        if whole < hi:  # h5py reads what we do not
            out[whole - lo :] = column[whole:hi]
        if whole > lo:
            size = pipeline.chunk
            firsts = range(lo - lo % size, whole, size)
            jobs += [(column, pipeline, first, whole, out) for first in firsts]

    def copy_chunk(job: tuple[h5py.Dataset, ChunkPipeline, int, int, np.ndarray]) -> None:
        column, pipeline, first, end, out = job
        values = _decode_chunk(column, pipeline, first)
        start, stop = max(lo, first), min(end, first + pipeline.chunk)
        out[start - lo : stop - lo] = values[start - first : stop - first]

    for _ in _mapper()(copy_chunk, jobs):
        pass


def _decode_chunk(column: h5py.Dataset, pipeline: ChunkPipeline, first: int) -> np.ndarray:
    """The `pipeline.chunk` values of the chunk starting at element `first`."""
    skipped, stored = column.id.read_direct_chunk((first,))
    itemsize, size = column.dtype.itemsize, pipeline.chunk
    if _applied(pipeline.deflate_bit, skipped):
        try:
            stored = zlib_ng.decompress(stored, bufsize=size * itemsize)
        except zlib_ng.error as error:
            raise ValueError(
                f"{column.name}: the chunk at element {first} does not inflate: {error}"
            ) from None
    if len(stored) != size * itemsize:
        raise ValueError(
            f"{column.name}: the chunk at element {first} holds {len(stored)} bytes, "
            f"expected {size * itemsize} ({size} values of {column.dtype})"
        )
    data = np.frombuffer(stored, dtype=np.uint8)
    if itemsize > 1 and _applied(pipeline.shuffle_bit, skipped):
        data = unshuffle(data, itemsize)
    return data.view(column.dtype).reshape(size)


def unshuffle(data: np.ndarray, itemsize: int) -> np.ndarray:
    """Undo HDF5's shuffle filter: byte j of every value was stored together, plane after plane.

    Bytes (itemsize, n) -> (n, itemsize). 2- and 8-byte values (x, y and t of events) go
    through word-wise kernels, ~40x and ~9x faster than numpy's strided transpose; they read
    bytes out of 64-bit words in little-endian order, as on every host numba compiles for.
    """
    n = len(data) // itemsize
    if itemsize not in _UNSHUFFLE_KERNELS or n % 8:
        return np.ascontiguousarray(data.reshape(itemsize, n).T).reshape(-1)
    out = np.empty(len(data), dtype=np.uint8)
    _UNSHUFFLE_KERNELS[itemsize](data.view(np.uint64), n // 8, out.view(np.uint64))
    return out


_SPREAD_16 = np.uint64(0x0000FFFF0000FFFF)
_SPREAD_8 = np.uint64(0x00FF00FF00FF00FF)
_LOW_32 = np.uint64(0xFFFFFFFF)


@numba.njit(cache=True, nogil=True, inline="always")
def _spread(x):
    """Bytes 0..3 of x to bytes 0, 2, 4, 6."""
    x = (x | (x << np.uint64(16))) & _SPREAD_16
    return (x | (x << np.uint64(8))) & _SPREAD_8


@numba.njit(cache=True, nogil=True)
def _unshuffle_2(planes, words, out):
    """Two planes of `words` 64-bit words (8 values each) -> 2-byte values, 4 to a word."""
    for b in range(words):
        low, high = planes[b], planes[words + b]
        out[2 * b] = _spread(low & _LOW_32) | (_spread(high & _LOW_32) << np.uint64(8))
        out[2 * b + 1] = _spread(low >> np.uint64(32)) | (
            _spread(high >> np.uint64(32)) << np.uint64(8)
        )


@numba.njit(cache=True, nogil=True)
def _swap(a, b, shift, mask):
    """Exchange the `mask` bytes of b with the bytes of a `shift` bits higher."""
    t = ((a >> shift) ^ b) & mask
    return a ^ (t << shift), b ^ t


@numba.njit(cache=True, nogil=True)
def _unshuffle_8(planes, words, out):
    """Eight planes -> 8-byte values: an 8x8 byte transpose per word, in three swap rounds."""
    s32, s16, s8 = np.uint64(32), np.uint64(16), np.uint64(8)
    for b in range(words):
        w0, w1, w2, w3 = planes[b], planes[words + b], planes[2 * words + b], planes[3 * words + b]
        w4, w5 = planes[4 * words + b], planes[5 * words + b]
        w6, w7 = planes[6 * words + b], planes[7 * words + b]
        w0, w4 = _swap(w0, w4, s32, _LOW_32)
        w1, w5 = _swap(w1, w5, s32, _LOW_32)
        w2, w6 = _swap(w2, w6, s32, _LOW_32)
        w3, w7 = _swap(w3, w7, s32, _LOW_32)
        w0, w2 = _swap(w0, w2, s16, _SPREAD_16)
        w1, w3 = _swap(w1, w3, s16, _SPREAD_16)
        w4, w6 = _swap(w4, w6, s16, _SPREAD_16)
        w5, w7 = _swap(w5, w7, s16, _SPREAD_16)
        w0, w1 = _swap(w0, w1, s8, _SPREAD_8)
        w2, w3 = _swap(w2, w3, s8, _SPREAD_8)
        w4, w5 = _swap(w4, w5, s8, _SPREAD_8)
        w6, w7 = _swap(w6, w7, s8, _SPREAD_8)
        o = 8 * b
        out[o], out[o + 1], out[o + 2], out[o + 3] = w0, w1, w2, w3
        out[o + 4], out[o + 5], out[o + 6], out[o + 7] = w4, w5, w6, w7


_UNSHUFFLE_KERNELS = {2: _unshuffle_2, 8: _unshuffle_8}


def _applied(bit: int | None, skipped: int) -> bool:
    """Whether the filter at `bit` was applied to a chunk with filter mask `skipped`."""
    return bit is not None and not skipped & (1 << bit)


_threads = 1
_pool: ThreadPoolExecutor | None = None
_pool_owner = (0, 0)  # (pid, threads) the pool was made for
_pool_lock = threading.Lock()


def set_decoding_threads(threads: int) -> None:
    """Decode chunks on `threads` threads from now on (1, the default: in the reading thread).

    Process-wide, like `torch.set_num_threads`: set it from one thread, not from several at
    once.
    """
    global _threads
    if threads < 1:
        raise ValueError(f"decoding threads must be >= 1, got {threads}")
    _threads = threads


def get_decoding_threads() -> int:
    """The threads chunks are decoded on (see `set_decoding_threads`)."""
    return _threads


@contextmanager
def decoding_threads(threads: int) -> Iterator[None]:
    """`set_decoding_threads(threads)` inside the block, the previous setting after it."""
    previous = get_decoding_threads()
    set_decoding_threads(threads)
    try:
        yield
    finally:
        set_decoding_threads(previous)


def _mapper() -> Callable[[Callable, Iterable], Iterable]:
    """`map` in this thread, or the process's pool's `map` when decoding on several threads.

    One pool a process, remade when the setting changes or in a forked child (whose copy of
    its parent's pool has no threads).
    """
    global _pool, _pool_owner
    threads = _threads
    if threads == 1:
        return map
    owner = (os.getpid(), threads)
    with _pool_lock:
        if _pool is None or _pool_owner != owner:
            if _pool is not None and _pool_owner[0] == owner[0]:
                _pool.shutdown(wait=False)
            _pool = ThreadPoolExecutor(threads, thread_name_prefix="eventsnn-decode")
            _pool_owner = owner
        return _pool.map


def _forget_pool_in_child() -> None:
    """A forked child starts without its parent's pool and with a free lock."""
    global _pool, _pool_lock
    _pool, _pool_lock = None, threading.Lock()


os.register_at_fork(after_in_child=_forget_pool_in_child)
