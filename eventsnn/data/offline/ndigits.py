"""NDigits: scikit-learn's handwritten digits turned into N-MNIST-like event recordings, offline.

Each of the 1797 8x8 digits of ``sklearn.datasets.load_digits`` (real handwriting, bundled with
scikit-learn) is upsampled with a cubic spline to 28x28, placed in a 34x34 field and moved along
N-MNIST's three saccades (a triangle, 100 ms each, eased in and out) in front of the event-camera
simulator, which gives ~300 ms recordings with ON and OFF events.

Split: sklearn's digits carry no writer ids, so the split is by index, stratified: within each
class, every fifth digit in file order (ranks 4, 9, 14, ...) is a test item, the others train
(1442 train / 355 test). Train and test hold different digits, possibly by the same writers.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np
from scipy import ndimage

from eventsnn.data.offline.cache import CachedEventDataset, GeneratedSet, stratified_test_mask
from eventsnn.events.simulate import simulate

SENSOR_SIZE = (34, 34, 2)
DIGIT_SIZE = 28
SACCADE_VERTICES = ((3.0, 0.0), (6.0, 6.0), (0.0, 6.0))
"""Offsets (x, y) in pixels of the digit's 28x28 box in the 34x34 field at the triangle corners."""


def first_per_class(labels: np.ndarray, samples_per_class: int | None) -> np.ndarray:
    """Indices of the first ``samples_per_class`` items of each class in file order (None: all)."""
    if samples_per_class is None:
        return np.arange(len(labels))
    keep = np.zeros(len(labels), dtype=bool)
    for label in np.unique(labels):
        keep[np.flatnonzero(labels == label)[:samples_per_class]] = True
    return np.flatnonzero(keep)


def saccade_offsets(duration_us: int, frame_us: int) -> tuple[np.ndarray, np.ndarray]:
    """Frame timestamps and (x, y) offsets of the digit along the eased three-saccade triangle."""
    times = np.arange(0, duration_us + 1, frame_us, dtype=np.int64)
    vertices = np.array([*SACCADE_VERTICES, SACCADE_VERTICES[0]])
    position = times / duration_us * 3.0
    segment = np.minimum(position.astype(np.int64), 2)
    along = position - segment
    eased = (1.0 - np.cos(np.pi * along)) / 2.0
    start, stop = vertices[segment], vertices[segment + 1]
    return times, start + (stop - start) * eased[:, None]


def digit_frames(digit: np.ndarray, offsets: np.ndarray, background: float) -> np.ndarray:
    """Intensity frames (N, 34, 34) of one 8x8 digit (0..16) moved by ``offsets`` (N, 2)."""
    upsampled = ndimage.zoom(
        digit / 16.0, DIGIT_SIZE / digit.shape[0], order=3, grid_mode=True, mode="grid-constant"
    )
    upsampled = np.clip(upsampled, 0.0, 1.0)
    width, height = SENSOR_SIZE[:2]
    rows = np.arange(height)[None, :, None] - offsets[:, 1, None, None]
    cols = np.arange(width)[None, None, :] - offsets[:, 0, None, None]
    rows, cols = np.broadcast_arrays(rows, cols)
    moved = ndimage.map_coordinates(upsampled, [rows, cols], order=1, mode="constant", cval=0.0)
    return background + moved


def generate_ndigits(
    samples_per_class: int | None,
    threshold: float,
    background: float,
    duration_us: int,
    frame_us: int,
    noise_rate_hz: float,
) -> GeneratedSet:
    """Simulate the event recordings of the selected sklearn digits; labels and split with them."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    labels = digits.target.astype(np.int64)
    test = stratified_test_mask(labels)
    chosen = first_per_class(labels, samples_per_class)
    times, offsets = saccade_offsets(duration_us, frame_us)
    recordings = [
        simulate(
            digit_frames(digits.images[i], offsets, background),
            times,
            threshold=threshold,
            noise_rate_hz=noise_rate_hz,
            seed=int(i),
        )
        for i in chosen
    ]
    return GeneratedSet(recordings, labels[chosen], ~test[chosen])


class NDigits(CachedEventDataset):
    """N-MNIST-like event recordings (34x34x2, ~300 ms) of scikit-learn's handwritten digits.

    Items are ``(events, label)``; ``transform`` / ``target_transform`` take tonic's transforms.
    Generated on first use (about ten seconds) and cached under ``root/NDigits`` as HDF5;
    ``samples_per_class`` keeps only the first digits of each class (quick tests).
    """

    name = "NDigits"
    sensor_size = SENSOR_SIZE
    classes = [str(d) for d in range(10)]

    def __init__(
        self,
        root: str | os.PathLike = "datasets",
        train: bool = True,
        transform: Callable | None = None,
        target_transform: Callable | None = None,
        *,
        samples_per_class: int | None = None,
        threshold: float = 0.35,
        background: float = 0.15,
        duration_us: int = 300_000,
        frame_us: int = 2_000,
        noise_rate_hz: float = 0.2,
    ) -> None:
        params = {
            "samples_per_class": samples_per_class,
            "threshold": threshold,
            "background": background,
            "duration_us": duration_us,
            "frame_us": frame_us,
            "noise_rate_hz": noise_rate_hz,
        }
        super().__init__(
            root,
            train,
            transform,
            target_transform,
            params,
            lambda: generate_ndigits(**params),
        )
