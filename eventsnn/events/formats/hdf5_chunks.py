"""Read a chunked 1-D HDF5 column by decoding its chunks here (deflate with zlib-ng, shuffle).

Through h5py, HDF5 inflates with the system zlib while holding h5py's global lock: reader
threads cannot decode in parallel, and zlib-ng inflates about 1.7x faster than zlib. When a
column's filter pipeline is shuffle and/or deflate and nothing else (what `write_hdf5` and most
tools write), each chunk's stored bytes are fetched with `read_direct_chunk` (a short call under
the lock) and the filters are undone here, outside the lock and the GIL. Any other layout
(contiguous, lzf, checksums, big-endian, unallocated chunks) is read by h5py as before.

Chunks are decoded in the reading thread, or by `decoding_threads(n)` threads: a process-wide
setting like torch's thread count, for programs (`eventsnn batch --readers`) that give reading
more than one core.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass

import h5py
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


Target = tuple[h5py.Dataset, np.ndarray]
"""A column and the array its elements [lo, hi) go to."""


def read_columns(targets: Sequence[Target], lo: int, hi: int) -> None:
    """out[:] = column[lo:hi] for every (column, out): chunks decoded here where possible."""
    jobs = []
    for column, out in targets:
        pipeline = chunk_pipeline(column)
        if pipeline is None:
            out[:] = column[lo:hi]
            continue
        size = pipeline.chunk
        jobs += [(column, pipeline, first, out) for first in range(lo - lo % size, hi, size)]

    def copy_chunk(job: tuple[h5py.Dataset, ChunkPipeline, int, np.ndarray]) -> None:
        column, pipeline, first, out = job
        values = _decode_chunk(column, pipeline, first)
        start, stop = max(lo, first), min(hi, first + pipeline.chunk)
        out[start - lo : stop - lo] = values[start - first : stop - first]

    for _ in _mapper()(copy_chunk, jobs):
        pass


def _decode_chunk(column: h5py.Dataset, pipeline: ChunkPipeline, first: int) -> np.ndarray:
    """The `pipeline.chunk` values of the chunk starting at element `first`."""
    skipped, stored = column.id.read_direct_chunk((first,))
    itemsize, size = column.dtype.itemsize, pipeline.chunk
    if _applied(pipeline.deflate_bit, skipped):
        stored = zlib_ng.decompress(stored, bufsize=size * itemsize)
    if len(stored) != size * itemsize:
        raise ValueError(
            f"{column.name}: the chunk at element {first} holds {len(stored)} bytes, "
            f"expected {size * itemsize} ({size} values of {column.dtype})"
        )
    data = np.frombuffer(stored, dtype=np.uint8)
    if itemsize > 1 and _applied(pipeline.shuffle_bit, skipped):
        # shuffle stored byte j of every value together: (itemsize, size) -> (size, itemsize)
        data = np.ascontiguousarray(data.reshape(itemsize, size).T)
    return data.view(column.dtype).reshape(size)


def _applied(bit: int | None, skipped: int) -> bool:
    """Whether the filter at `bit` was applied to a chunk with filter mask `skipped`."""
    return bit is not None and not skipped & (1 << bit)


_threads = 1
_pools: dict[tuple[int, int], ThreadPoolExecutor] = {}
_pools_lock = threading.Lock()


@contextmanager
def decoding_threads(threads: int) -> Iterator[None]:
    """Decode chunks on `threads` threads inside the block (1: in the reading thread).

    Process-wide, like torch's thread count: every thread reading inside the block shares one
    pool. Pools belong to the process that made them, so a forked child makes its own.
    """
    global _threads
    if threads < 1:
        raise ValueError(f"decoding_threads needs threads >= 1, got {threads}")
    previous, _threads = _threads, threads
    try:
        yield
    finally:
        _threads = previous


def _mapper() -> Callable[[Callable, Iterable], Iterable]:
    """`map` in this thread, or the process's pool's `map` when decoding on several threads."""
    threads = _threads
    if threads == 1:
        return map
    key = (os.getpid(), threads)
    with _pools_lock:
        if key not in _pools:
            _pools[key] = ThreadPoolExecutor(threads, thread_name_prefix="eventsnn-decode")
        return _pools[key].map
