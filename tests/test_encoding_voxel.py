"""Voxel grids: equal to tonic's ToVoxelGrid where tonic is right, and the two places it is not."""

import numpy as np
import pytest
import tonic.transforms as tonic_transforms
from test_encoding_inputs import LAYOUTS, random_events, tonic_dataset_layout

from eventsnn.encoding import to_voxel_grid, transforms
from eventsnn.events import EventsError, empty_events, make_events


@pytest.mark.parametrize("layout", ["nmnist", "davis"])
@pytest.mark.parametrize("n_time_bins", [1, 5, 16])
def test_voxel_grid_equals_tonic_on_integer_polarity(layout, n_time_bins):
    sensor = LAYOUTS[layout]
    int_polarity = tonic_dataset_layout(random_events(5000, sensor, seed=n_time_bins))
    theirs = tonic_transforms.ToVoxelGrid(sensor, n_time_bins)(int_polarity)
    ours = transforms.ToVoxelGrid(sensor, n_time_bins)(int_polarity)
    assert ours.dtype == theirs.dtype == np.float64 and ours.shape == theirs.shape
    np.testing.assert_array_equal(ours, theirs)


def test_tonic_turns_bool_off_polarity_into_plus_one():
    # tonic writes -1 into a bool array (`pols[pols == 0] = -1`), which stores True: every event
    # counts +1. Ours equals tonic on the same events with every polarity set ON.
    ev = random_events(3000, (34, 34, 2), seed=7)
    all_on = ev.copy()
    all_on["p"] = True
    np.testing.assert_array_equal(
        tonic_transforms.ToVoxelGrid((34, 34, 2), 6)(ev), to_voxel_grid(all_on, (34, 34, 2), 6)
    )
    assert to_voxel_grid(ev, (34, 34, 2), 6).min() < 0


def test_voxel_grid_hand_computed_bilinear_weights():
    # times 0, 25, 100 over 4 bins: positions 0, 1, 4 (the last one falls outside, as in tonic)
    ev = make_events([0, 1, 1], [0, 0, 0], [0, 25, 100], [1, 0, 1])
    grid = to_voxel_grid(ev, (2, 1, 2), 4)[:, 0, 0, :]
    expected = np.zeros((4, 2))
    expected[0, 0] = 1.0
    expected[1, 1] = -1.0
    np.testing.assert_array_equal(grid, expected)
    half = to_voxel_grid(make_events([0, 0, 0], [0, 0, 0], [0, 10, 40], [0, 1, 1]), (1, 1, 2), 4)
    # event at t=10: position 1.0 -> bin 1 weight 1; t=0 OFF in bin 0; t=40 outside
    np.testing.assert_array_equal(half[:, 0, 0, 0], [-1.0, 1.0, 0.0, 0.0])
    split = to_voxel_grid(make_events([0, 0], [0, 0], [0, 8], [1, 1]), (1, 1, 2), 2)
    # t=0 -> 1.0 into bin 0; t=8 is the last event (position 2) and falls outside
    np.testing.assert_array_equal(split[:, 0, 0, 0], [1.0, 0.0])
    quarter = to_voxel_grid(make_events([0, 0, 0], [0, 0, 0], [0, 3, 8], [1, 1, 1]), (1, 1, 2), 2)
    # t=3: position 0.75 -> 0.25 into bin 0, 0.75 into bin 1
    np.testing.assert_array_equal(quarter[:, 0, 0, 0], [1.25, 0.75])


def test_zero_duration_puts_every_event_in_bin_zero():
    # tonic divides 0 by 0 here and indexes with NaN cast to int
    ev = make_events([0, 1, 1], [0, 0, 0], [7, 7, 7], [1, 1, 0])
    grid = to_voxel_grid(ev, (2, 1, 2), 3)
    np.testing.assert_array_equal(grid[0, 0, 0], [1.0, 0.0])
    assert not grid[1:].any()


def test_voxel_grid_empty_and_bad_input():
    assert to_voxel_grid(empty_events(), (5, 4, 2), 3).shape == (3, 1, 4, 5)
    assert not to_voxel_grid(empty_events(), (5, 4, 2), 3).any()
    with pytest.raises(EventsError, match="event 2 has t=1"):
        to_voxel_grid(make_events([0, 0, 0], [0, 0, 0], [1, 5, 1], [1, 1, 1]), (5, 4, 2), 3)
    with pytest.raises(EventsError, match="'y' out of the sensor: event 0"):
        to_voxel_grid(make_events([0], [4], [1], [1]), (5, 4, 2), 3)
    with pytest.raises(EventsError, match="n_time_bins must be >= 1"):
        to_voxel_grid(empty_events(), (5, 4, 2), 0)
