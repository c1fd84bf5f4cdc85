"""Event-to-event transforms and time surfaces: equal to tonic's (seeded alike), bad input."""

import numpy as np
import pytest
import tonic.transforms as tonic_transforms
from test_encoding_inputs import LAYOUTS, random_events, tonic_dataset_layout

from eventsnn.encoding import transforms
from eventsnn.encoding.geometry import crop, downsample, flip_lr, flip_ud, rotate, time_reversal
from eventsnn.encoding.surfaces import to_timesurface
from eventsnn.events import EventsError, empty_events, make_events

NMNIST = LAYOUTS["nmnist"]


def same_as_tonic(ours, theirs, events, seed=3):
    """Run both transforms from the same np.random state; return both outputs."""
    np.random.seed(seed)
    a = ours(events.copy())
    np.random.seed(seed)
    b = theirs(events.copy())
    return a, b


CASES = [
    ("CenterCrop", {"sensor_size": NMNIST, "size": 20}),
    ("CenterCrop", {"sensor_size": NMNIST, "size": (40, 30)}),
    ("RandomCrop", {"sensor_size": NMNIST, "target_size": (20, 10)}),
    ("CropTime", {"min": 100_000, "max": 600_000}),
    ("CropTime", {"min": 500_000}),
    ("Downsample", {"time_factor": 0.001, "spatial_factor": 0.5}),
    ("Downsample", {"spatial_factor": (0.25, 0.7)}),
    ("MergePolarities", {}),
    ("RandomFlipLR", {"sensor_size": NMNIST, "p": 1.0}),
    ("RandomFlipUD", {"sensor_size": NMNIST, "p": 1.0}),
    ("RandomFlipPolarity", {"p": 1.0}),
    ("RandomTimeReversal", {"p": 1.0}),
    ("RandomTimeReversal", {"p": 1.0, "flip_polarities": False}),
    ("DropEvent", {"p": 0.3}),
    ("DropEvent", {"p": (0.1, 0.6)}),
    ("DropEventByTime", {"duration_ratio": 0.3}),
    ("DropEventByTime", {"duration_ratio": (0.1, 0.5)}),
    ("DropEventByArea", {"sensor_size": NMNIST, "area_ratio": 0.4}),
    ("SpatialJitter", {"sensor_size": NMNIST, "var_x": 2, "var_y": 1, "clip_outliers": True}),
    ("TimeJitter", {"std": 300, "sort_timestamps": True}),
    ("TimeJitter", {"std": 10}),
    ("Decimation", {"n": 3}),
    ("TimeSkew", {"coefficient": 1.3, "offset": 100}),
    ("TimeSkew", {"coefficient": (0.8, 1.2), "offset": (0, 150)}),
    ("TimeAlignment", {}),
]


def test_every_tonic_transform_is_importable_from_ours():
    names = {n for n in dir(tonic_transforms) if n[0].isupper() and n != "Callable"}
    names -= {"Iterable"}
    assert names <= set(transforms.__all__)


@pytest.mark.parametrize(("name", "params"), CASES, ids=lambda c: str(c))
def test_event_transform_equals_tonic(name, params):
    ev = random_events(3000, NMNIST, seed=len(name))
    a, b = same_as_tonic(
        getattr(transforms, name)(**params), getattr(tonic_transforms, name)(**params), ev
    )
    assert a.dtype == b.dtype
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(("name", "params"), CASES[::3], ids=lambda c: str(c))
def test_event_transform_keeps_the_tonic_dataset_dtype(name, params):
    ev = tonic_dataset_layout(random_events(2000, NMNIST, seed=9))
    a, b = same_as_tonic(
        getattr(transforms, name)(**params), getattr(tonic_transforms, name)(**params), ev
    )
    assert a.dtype == ev.dtype
    np.testing.assert_array_equal(a, b)


def test_shd_channel_downsampling_700_to_70():
    ev = random_events(3000, LAYOUTS["shd"], seed=2)
    out = transforms.Downsample(sensor_size=(700, 1, 1), target_size=(70, 1))(ev)
    np.testing.assert_array_equal(out["x"], ev["x"] // 10)
    shd = tonic_dataset_layout(ev, audio=True)
    theirs = tonic_transforms.Downsample(sensor_size=(700, 1, 1), target_size=(70, 1))(shd)
    ours = transforms.Downsample(sensor_size=(700, 1, 1), target_size=(70, 1))(shd)
    assert ours.dtype == shd.dtype
    np.testing.assert_array_equal(ours, theirs)
    frames = transforms.ToFrame((70, 1, 1), n_time_bins=5)(ours)
    assert frames.shape == (5, 1, 70) and frames.sum() <= 3000


def test_drop_event_by_area_draws_the_ratio_inside_the_range():
    # tonic passes `low and high` (= high) to np.random.uniform, i.e. draws from [high, 1)
    ev = random_events(3000, NMNIST, seed=4)
    drop = transforms.DropEventByArea(NMNIST, area_ratio=(0.1, 0.2))
    np.random.seed(0)
    ratio = np.random.uniform(0.1, 0.2)
    w = int(34 * ratio)
    x0, y0 = np.random.randint(0, 34 - w), np.random.randint(0, 34 - w)
    np.random.seed(0)
    out = drop(ev)
    inside = (ev["x"] >= x0) & (ev["x"] < x0 + w) & (ev["y"] >= y0) & (ev["y"] < y0 + w)
    np.testing.assert_array_equal(out, ev[~inside])


def test_crop_time_keeps_no_state_between_recordings():
    # tonic's CropTime stores the first recording's last time in `max` and reuses it
    first = random_events(100, NMNIST, duration=1000)
    second = random_events(100, NMNIST, duration=5000, seed=1)
    ours, theirs = transforms.CropTime(min=0), tonic_transforms.CropTime(min=0)
    ours(first), theirs(first)
    assert len(ours(second)) == 100
    assert len(theirs(second)) < 100


def test_hand_computed_crop_flip_reversal_downsample():
    ev = make_events([0, 5, 9], [1, 2, 3], [10, 20, 40], [1, 0, 1])
    cropped = crop(ev, (4, 1), (6, 2))
    assert cropped["x"].tolist() == [1] and cropped["y"].tolist() == [1]
    padded = crop(ev, (-2, -1), (14, 6))
    assert padded["x"].tolist() == [2, 7, 11] and padded["y"].tolist() == [2, 3, 4]
    reversed_ = time_reversal(ev)
    assert reversed_["t"].tolist() == [0, 20, 30] and reversed_["p"].tolist() == [0, 1, 0]
    scaled = downsample(ev, time_factor=0.5, spatial_factor=0.5)
    assert scaled["x"].tolist() == [0, 2, 4] and scaled["t"].tolist() == [5, 10, 20]
    flipped = transforms.RandomFlipLR((10, 4, 2), p=1.0)(ev)
    assert flipped["x"].tolist() == [9, 4, 0]


def test_event_transforms_on_empty_and_unsorted_input():
    for name, params in CASES:
        if name not in ("DropEventByTime", "DropEvent", "RandomCrop"):
            assert len(getattr(transforms, name)(**params)(empty_events())) == 0
    unsorted = make_events([0, 1], [0, 0], [5, 1], [1, 1])
    with pytest.raises(EventsError, match="event 1 has t=1"):
        transforms.MergePolarities()(unsorted)
    with pytest.raises(EventsError, match="target_size needs sensor_size"):
        transforms.Downsample(target_size=(10, 1))(unsorted)


@pytest.mark.parametrize("layout", ["nmnist", "davis"])
def test_timesurface_equals_tonic(layout):
    sensor = LAYOUTS[layout]
    ev = random_events(4000, sensor, seed=8, duration=100_000)
    theirs = tonic_transforms.ToTimesurface(sensor, dt=7000, tau=3000.0)(ev)
    ours = transforms.ToTimesurface(sensor, dt=7000, tau=3000.0)(ev)
    assert ours.shape == theirs.shape == (14, 2, *sensor[1::-1])
    np.testing.assert_array_equal(ours, theirs)


def test_timesurface_hand_computed_and_edge_cases():
    ev = make_events([0, 1], [0, 0], [0, 10], [1, 0])
    surfaces = to_timesurface(ev, (2, 1, 2), dt=10, tau=10.0)
    # one window [0, 10) holds the t=0 event; its surface is taken at t = 10
    assert surfaces.shape == (1, 2, 1, 2)
    np.testing.assert_allclose(surfaces[0, 1, 0], [np.exp(-1.0), 0.0])
    assert not surfaces[0, 0].any()
    assert not to_timesurface(empty_events(), (2, 1, 2), dt=10, tau=1.0).any()
    with pytest.raises(EventsError, match="dt must be > 0"):
        to_timesurface(ev, (2, 1, 2), dt=0, tau=1.0)


def test_rotation_by_quarter_turns():
    ev = random_events(500, (20, 20, 2), seed=12)
    half = rotate(ev, (20, 20, 2), 180)
    np.testing.assert_array_equal(half, flip_ud(flip_lr(ev, 20), 20))
    quarter = rotate(ev, (20, 20, 2), 90)
    np.testing.assert_array_equal(quarter["x"], ev["y"])
    np.testing.assert_array_equal(quarter["y"], 19 - ev["x"])
    full = ev
    for _ in range(4):
        full = rotate(full, (20, 20, 2), 90)
    np.testing.assert_array_equal(full, ev)
    # on a wide sensor a quarter turn pushes the far columns off: they are dropped
    # centre (7.5, 1.5): (0, 2) -> (8, 9) and (15, 2) -> (8, -6) leave; (7, 1) -> (7, 2) stays
    wide = make_events([0, 15, 7], [2, 2, 1], [1, 2, 3], [1, 1, 0])
    turned = rotate(wide, (16, 4, 2), 90)
    assert turned["x"].tolist() == [7] and turned["y"].tolist() == [2]
    np.random.seed(2)
    assert len(transforms.RandomRotation((20, 20, 2), degrees=30)(ev)) <= len(ev)
