"""The checkpoint package's exceptions."""

from __future__ import annotations


class CheckpointError(ValueError):
    """A checkpoint cannot be written or read: the message names the file and the key."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """No file at the checkpoint's path: a CheckpointError (one line in the commands) that is
    also a FileNotFoundError for callers that catch that."""
