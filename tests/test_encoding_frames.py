"""Frames and images: equal to tonic's ToFrame / ToImage, hand-computed counts, bad input."""

import numpy as np
import pytest
import tonic
import tonic.transforms as tonic_transforms
from test_encoding_inputs import LAYOUTS, random_events, tonic_dataset_layout

from eventsnn.encoding import to_frame, to_image, transforms
from eventsnn.events import EventsError, empty_events, make_events

SLICINGS = [
    {"time_window": 1000},
    {"time_window": 25_000.5, "overlap": 5000, "include_incomplete": True},
    {"time_window": 30_000, "start_time": -10_000, "end_time": 1_200_000},
    {"event_count": 333},
    {"event_count": 500, "overlap": 100, "include_incomplete": True},
    {"n_time_bins": 7},
    {"n_time_bins": 10, "overlap": 0.25},
    {"n_event_bins": 5},
    {"n_event_bins": 6, "overlap": 0.5},
]


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("slicing", SLICINGS, ids=str)
def test_to_frame_equals_tonic(layout, slicing):
    sensor = LAYOUTS[layout]
    ev = random_events(5000, sensor, seed=len(str(slicing)))
    ours = to_frame(ev, sensor, **slicing)
    theirs = tonic_transforms.ToFrame(sensor, **slicing)(ev.copy())
    assert ours.dtype == theirs.dtype == np.int16
    np.testing.assert_array_equal(ours, theirs)


@pytest.mark.parametrize("slicing", SLICINGS[::2], ids=str)
def test_transform_on_tonic_dataset_dtypes_equals_tonic(slicing):
    nmnist = tonic_dataset_layout(random_events(3000, LAYOUTS["nmnist"], seed=1))
    ours = transforms.ToFrame(LAYOUTS["nmnist"], **slicing)(nmnist)
    np.testing.assert_array_equal(
        ours, tonic_transforms.ToFrame(LAYOUTS["nmnist"], **slicing)(nmnist)
    )
    shd = tonic_dataset_layout(random_events(3000, LAYOUTS["shd"], seed=2), audio=True)
    ours = transforms.ToFrame(LAYOUTS["shd"], **slicing)(shd)
    theirs = tonic_transforms.ToFrame(LAYOUTS["shd"], **slicing)(shd.copy())
    assert ours.ndim == 3 and ours.shape[1:] == (1, 700)
    np.testing.assert_array_equal(ours, theirs)


def test_to_frame_hand_computed_counts():
    ev = make_events([0, 1, 1, 0, 2], [0, 0, 0, 1, 1], [0, 10, 15, 20, 29], [1, 0, 0, 1, 1])
    frames = to_frame(ev, (3, 2, 2), time_window=10, include_incomplete=True)
    expected = np.zeros((3, 2, 2, 3), np.int16)
    expected[0, 1, 0, 0] = 1  # t=0 ON at (0, 0)
    expected[1, 0, 0, 1] = 2  # t=10, 15 OFF at (1, 0)
    expected[2, 1, 1, 0] = 1  # t=20 ON at (0, 1)
    expected[2, 1, 1, 2] = 1  # t=29 ON at (2, 1)
    np.testing.assert_array_equal(frames, expected)
    merged = to_frame(ev[ev["p"]], (3, 2, 1), event_count=10)
    assert merged.shape == (1, 1, 2, 3) and merged.sum() == 3


def test_merge_polarities_equals_the_sum_over_polarities():
    ev = random_events(3000, (34, 34, 2), seed=5)
    merged = to_frame(ev, (34, 34, 2), n_time_bins=4, merge_polarities=True)
    assert merged.shape == (4, 1, 34, 34)
    split = to_frame(ev, (34, 34, 2), n_time_bins=4)
    np.testing.assert_array_equal(merged[:, 0], split.sum(axis=1))


def test_frames_count_every_event_once_without_overlap():
    ev = random_events(10_000, (128, 128, 2), seed=3)
    assert to_frame(ev, (128, 128, 2), n_event_bins=10).sum() == 10_000
    assert to_frame(ev, (128, 128, 2), event_count=1000, overlap=500).sum() == 19 * 1000
    assert to_image(ev, (128, 128, 2)).sum() == 10_000


def test_float32_frames_equal_int16_counts():
    ev = random_events(2000, (34, 34, 2))
    as_float = to_frame(ev, (34, 34, 2), n_time_bins=4, dtype=np.float32)
    assert as_float.dtype == np.float32
    np.testing.assert_array_equal(as_float, to_frame(ev, (34, 34, 2), n_time_bins=4))


def test_to_image_equals_tonic_and_drops_into_compose():
    ev = random_events(4000, (34, 34, 2), seed=4)
    np.testing.assert_array_equal(
        transforms.ToImage((34, 34, 2))(ev), tonic_transforms.ToImage((34, 34, 2))(ev.copy())
    )
    pipeline = tonic_transforms.Compose(
        [transforms.RefractoryPeriod(delta=100), transforms.ToFrame((34, 34, 2), n_time_bins=3)]
    )
    assert pipeline(ev).shape == (3, 2, 34, 34)


def test_empty_events_give_zero_frames_of_the_right_shape():
    assert to_frame(empty_events(), (34, 20, 2), n_time_bins=5).shape == (5, 2, 20, 34)
    assert to_frame(empty_events(), (34, 20, 2), time_window=1000).shape == (1, 2, 20, 34)
    assert not to_image(empty_events(), (34, 20, 2)).any()


def test_window_longer_than_recording_gives_one_frame_with_every_event():
    ev = random_events(100, (34, 34, 2), duration=500)
    frames = to_frame(ev, (34, 34, 2), time_window=10_000)
    assert frames.shape[0] == 1 and frames.sum() == 100


def test_zero_duration_time_bins_are_empty_as_in_tonic():
    ev = make_events([1, 2, 3], [0, 0, 0], [50, 50, 50], [1, 1, 0])
    ours = to_frame(ev, (34, 34, 2), n_time_bins=3)
    np.testing.assert_array_equal(ours, tonic_transforms.ToFrame((34, 34, 2), n_time_bins=3)(ev))
    assert ours.shape == (3, 2, 34, 34) and not ours.any()


def test_bad_input_raises_events_error_naming_the_event():
    ev = make_events([0, 1, 2], [0, 0, 0], [5, 3, 9], [1, 0, 1])
    with pytest.raises(EventsError, match="event 1 has t=3"):
        to_frame(ev, (34, 34, 2), n_time_bins=2)
    ev = make_events([0, 34, 2], [0, 0, 0], [1, 2, 3], [1, 0, 1])
    with pytest.raises(EventsError, match="'x' out of the sensor: event 1"):
        to_frame(ev, (34, 34, 2), event_count=2)
    with pytest.raises(EventsError, match="one polarity but the events hold both"):
        to_frame(make_events([0, 1], [0, 0], [1, 2], [1, 0]), (34, 34, 1), n_time_bins=2)
    with pytest.raises(EventsError, match="exactly one of"):
        to_frame(ev, (34, 34, 2), time_window=10, n_time_bins=2)
    with pytest.raises(EventsError, match="time_window must be > 0"):
        to_frame(make_events([0], [0], [1], [1]), (34, 34, 2), time_window=0)
    with pytest.raises(EventsError, match="'t' has dtype int32"):
        to_frame(
            np.zeros(2, [("x", "<i2"), ("y", "<i2"), ("t", "<i4"), ("p", "?")]),
            (2, 2, 2),
            n_time_bins=1,
        )


def test_sensor_size_none_is_inferred_as_tonic_does():
    ev = random_events(2000, (30, 20, 2), seed=6)
    for events in (ev, ev[ev["p"]]):
        ours = transforms.ToFrame(None, n_time_bins=3)(events)
        np.testing.assert_array_equal(
            ours, tonic_transforms.ToFrame(None, n_time_bins=3)(events.copy())
        )


def test_works_as_a_tonic_dataset_transform():
    recordings = [
        (tonic_dataset_layout(random_events(3000, (34, 34, 2), seed=s)), s) for s in (1, 2)
    ]
    slicer = tonic.slicers.SliceByEventCount(event_count=1000)
    ours = tonic.SlicedDataset(
        recordings, slicer, transform=transforms.ToFrame((34, 34, 2), n_time_bins=4)
    )
    theirs = tonic.SlicedDataset(
        recordings, slicer, transform=tonic_transforms.ToFrame((34, 34, 2), n_time_bins=4)
    )
    assert len(ours) == len(theirs) == 6
    for (a, label_a), (b, label_b) in zip(ours, theirs, strict=True):
        assert label_a == label_b
        np.testing.assert_array_equal(a, b)
