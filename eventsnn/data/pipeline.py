"""A chain of event transforms that, unlike tonic's ``Compose``, also runs on empty recordings.

Tonic's ``Compose`` stops at the first empty event array and returns it as it is, so a recording
that a denoise filter emptied reaches the batch as events instead of frames and breaks collation;
every transform here takes empty input and returns the right shape (empty frames), so all run.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Pipeline:
    """Apply ``transforms`` in order to a sample, whatever its length."""

    transforms: Sequence[Callable[[Any], Any]]

    def __call__(self, sample: Any) -> Any:
        for transform in self.transforms:
            sample = transform(sample)
        return sample
