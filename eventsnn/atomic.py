"""Atomic file writes: readers see the previous file or the new one, whole, never a partial one."""

from __future__ import annotations

import glob
import os
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

TOKEN_BYTES = 6
"""Random bytes in a temporary file's name: `.<name>.<12 hex digits>.tmp` beside the file."""


@contextmanager
def written_atomically(path: str | os.PathLike, durable: bool = True) -> Iterator[Path]:
    """A temporary path beside `path` to write; renamed over `path` on success, removed on failure.

    With `durable`, the file and then its folder are fsynced, so the rename survives a power cut
    (checkpoints, results); caches that can be rebuilt skip it for speed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(TOKEN_BYTES)}.tmp")
    try:
        yield tmp
        if durable:
            _fsync(tmp, os.O_RDONLY)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    if durable:
        _fsync(path.parent, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))


def temporaries(path: str | os.PathLike) -> list[Path]:
    """The temporary files `written_atomically(path)` makes that are there (a killed write leaves
    its own), exactly: not those of another file whose name extends this one's (`out.h5.2`)."""
    path = Path(path)
    name = re.compile(rf"\.{re.escape(path.name)}\.[0-9a-f]{{{2 * TOKEN_BYTES}}}\.tmp")
    found = path.parent.glob(f".{glob.escape(path.name)}.*.tmp")
    return [tmp for tmp in found if name.fullmatch(tmp.name)]


def _fsync(path: Path, flags: int) -> None:
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
