"""Class decisions from scores: the top class, or none (`NO_DECISION`) when classes tie at the top.

A window whose output layer stayed silent scores every class alike (a count readout of zeros
gives uniform probabilities): argmax would call it class 0, and class 0 would then win the
majority vote of any quiet recording. So a tie is no decision, as are scores with a NaN (a
diverged model), for a window (`decide` of its probabilities; batch and stream labels), for a
recording's mean probabilities and for its majority vote, whose votes are those of the windows
that decided (`votes`). Training's accuracy keeps torch's argmax, as the peers' does.
"""

from __future__ import annotations

import numpy as np

NO_DECISION = -1
"""The class recorded when the top score is shared (and for a recording without windows)."""


def decide(scores: np.ndarray) -> np.ndarray:
    """The index of the top score along the last axis, `NO_DECISION` where several share it or
    a score is NaN."""
    scores = np.asarray(scores)
    top = scores.argmax(axis=-1)
    best = np.take_along_axis(scores, top[..., None], axis=-1)
    tied = np.count_nonzero(scores == best, axis=-1) > 1
    return np.where(tied | np.isnan(scores).any(axis=-1), NO_DECISION, top)


def votes(predicted: np.ndarray, classes: int) -> np.ndarray:
    """Windows per class among those that decided (`predicted` != `NO_DECISION`)."""
    predicted = np.asarray(predicted)
    return np.bincount(predicted[predicted != NO_DECISION], minlength=classes)
