"""Batching of variable-length samples into time-first tensors."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.nn.utils.rnn import pad_sequence


def as_float_tensor(sample: Any) -> torch.Tensor:
    """A sample (numpy array or tensor) as a float32 tensor, without copying when it already is."""
    if isinstance(sample, torch.Tensor):
        return sample.float()
    return torch.from_numpy(np.ascontiguousarray(sample)).float()


def pad_time_first(batch: Sequence[tuple[Any, Any]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Collate ``(tensor (T_i, ...), label)`` samples into ``(max T_i, B, ...)`` and ``(B,)``.

    Shorter samples are zero-padded at the end (no input events), as tonic's ``PadTensors``
    but time-first, the layout every network here takes. Samples must agree on all but T.
    """
    tensors = [as_float_tensor(data) for data, _ in batch]
    shapes = {tuple(t.shape[1:]) for t in tensors}
    if len(shapes) > 1:
        raise ValueError(
            f"samples of one batch differ in shape beyond time: {sorted(shapes)}; "
            "the encoding transform must give the same (C, H, W) for every sample"
        )
    labels = torch.as_tensor(np.asarray([int(label) for _, label in batch]), dtype=torch.long)
    return pad_sequence(tensors, batch_first=False), labels
