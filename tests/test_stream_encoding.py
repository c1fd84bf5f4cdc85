"""The stream takes its step and per-event filters from the recipe stored in a checkpoint."""

from __future__ import annotations

import numpy as np

from eventsnn.encoding.transforms import Downsample
from eventsnn.events import make_events
from eventsnn.streaming.encoding import encoding_from_hparams


def to_frame(**init_args) -> dict:
    return {"class_path": "eventsnn.encoding.transforms.ToFrame", "init_args": init_args}


def test_time_window_and_downsample_carry_over():
    hparams = {
        "transform": [
            {
                "class_path": "eventsnn.encoding.transforms.Downsample",
                "init_args": {"spatial_factor": 0.25},
            },
            to_frame(sensor_size=[32, 32, 2], time_window=2000, n_time_bins=None),
        ]
    }
    encoding = encoding_from_hparams(hparams)
    assert encoding.step_us == 2000
    assert encoding.frame_size == (32, 32, 2)
    assert encoding.notes == []
    events = make_events([127, 8], [64, 3], [0, 10], [1, 0])
    np.testing.assert_array_equal(
        encoding.event_filter(events), Downsample(spatial_factor=0.25)(events)
    )


def test_bins_per_recording_leave_the_step_to_the_user():
    hparams = {"transform": [to_frame(sensor_size=[34, 34, 2], n_time_bins=16, time_window=None)]}
    encoding = encoding_from_hparams(hparams)
    assert encoding.step_us is None and encoding.event_filter is None
    assert encoding.frame_size == (34, 34, 2)
    assert "n_time_bins=16" in encoding.step_note and "--step-us" in encoding.step_note


def test_other_transforms_are_reported_and_never_imported():
    hparams = {
        "transform": [
            {"class_path": "eventsnn.encoding.transforms.Denoise", "init_args": {}},
            {"class_path": "os.system", "init_args": {"command": "false"}},
            to_frame(sensor_size=[34, 34, 2], time_window=1000),
        ]
    }
    encoding = encoding_from_hparams(hparams)
    assert encoding.step_us == 1000 and encoding.event_filter is None
    assert any("Denoise" in note for note in encoding.notes)
    assert any("os.system" in note for note in encoding.notes)


def test_no_recipe_is_a_note():
    assert encoding_from_hparams(None).notes == ["the checkpoint names no training encoding"]
    no_frames = encoding_from_hparams({"transform": [{"class_path": "x.Y"}]})
    assert "no ToFrame" in no_frames.notes[-1]


def test_runner_from_a_checkpoint_takes_its_recipe(tmp_path):
    import torch

    from eventsnn.checkpoint import read_checkpoint, save, write_checkpoint
    from eventsnn.models import SpikingClassifier
    from eventsnn.streaming import StreamRunner

    model = SpikingClassifier([{"flatten": {}}, {"linear": {"out": 3}}, {"lif": {}}], [2, 8, 8])
    save(model, tmp_path / "plain.h5", states=False)
    checkpoint = read_checkpoint(tmp_path / "plain.h5")
    checkpoint["datamodule_hyper_parameters"] = {
        "transform": [
            {
                "class_path": "eventsnn.encoding.transforms.Downsample",
                "init_args": {"spatial_factor": 0.25},
            },
            to_frame(sensor_size=[8, 8, 2], time_window=2500),
        ]
    }
    write_checkpoint(tmp_path / "recipe.h5", checkpoint)
    runner = StreamRunner(tmp_path / "recipe.h5")
    assert runner.binner.step_us == 2500
    assert runner.binner.frame_shape == (2, 8, 8)
    results = runner.feed(make_events([31, 0], [31, 0], [0, 2600], [1, 0]))
    assert len(results) == 1 and results[0].events == 1  # x=31 -> 7 after the downsample
    plain = StreamRunner(tmp_path / "plain.h5")
    assert plain.binner.step_us == 1000 and plain.event_filter is None
    assert isinstance(plain.model, torch.nn.Module)
