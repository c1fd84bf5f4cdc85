"""The checkpoint package's exception."""

from __future__ import annotations


class CheckpointError(ValueError):
    """A checkpoint cannot be written or read: the message names the file and the key."""
