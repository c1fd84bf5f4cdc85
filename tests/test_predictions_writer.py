"""`eventsnn predict`'s output file: probabilities, predicted classes, labels and accuracy."""

from pathlib import Path

import h5py
import numpy as np
import pytest

from eventsnn.models.predictions import write_predictions


def test_labelled_batches_give_labels_and_accuracy(tmp_path: Path):
    batches = [np.array([[0.9, 0.1], [0.2, 0.8]]), np.array([[0.6, 0.4]])]
    summary = write_predictions(tmp_path / "p.h5", batches, [np.array([0, 0]), np.array([0])], int)
    assert summary == "3 samples, accuracy 66.67%"
    with h5py.File(tmp_path / "p.h5") as stored:
        assert stored["predicted"][:].tolist() == [0, 1, 0]
        assert stored["labels"][:].tolist() == [0, 0, 0]
        assert stored.attrs["accuracy"] == pytest.approx(2 / 3)
        assert stored.attrs["model"] == "builtins.int"


def test_unlabelled_batches_store_predictions_only(tmp_path: Path):
    assert write_predictions(tmp_path / "p.h5", [np.eye(3)], [], int) == "3 samples"
    with h5py.File(tmp_path / "p.h5") as stored:
        assert set(stored) == {"probabilities", "predicted"}
        assert "accuracy" not in stored.attrs
