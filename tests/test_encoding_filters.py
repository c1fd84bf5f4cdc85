"""Denoise and refractory period: equal to tonic away from its start-up quirks, hand-made cases."""

import numpy as np
import pytest
import tonic.transforms as tonic_transforms
from test_encoding_inputs import LAYOUTS, random_events, tonic_dataset_layout

from eventsnn.encoding import denoise, denoise_mask, refractory_period, transforms
from eventsnn.events import EventsError, empty_events, make_events


def late(events: np.ndarray, offset: int) -> np.ndarray:
    """The same events starting at t = offset (past tonic's start-up window)."""
    shifted = events.copy()
    shifted["t"] += offset
    return shifted


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("filter_time", [500, 5000.5])
def test_denoise_equals_tonic_after_the_first_filter_time(layout, filter_time):
    ev = late(random_events(4000, LAYOUTS[layout], seed=3), 10_000)
    np.testing.assert_array_equal(
        denoise(ev, filter_time), tonic_transforms.Denoise(filter_time)(ev)
    )


def test_tonic_denoise_also_keeps_isolated_events_before_filter_time():
    # tonic's pixel memory starts at filter_time, so at t < filter_time every pixel with an
    # in-range neighbour looks recently active. It keeps what we keep plus only such events.
    ev = random_events(3000, (34, 34, 2), seed=5, duration=100_000)
    theirs = tonic_transforms.Denoise(5000)(ev)
    ours = denoise(ev, 5000)
    extra = np.setdiff1d(theirs, ours)
    assert len(extra) > 0 and (extra["t"] < 5000).all()
    assert len(np.setdiff1d(ours, theirs)) == 0


def test_denoise_hand_made_neighbourhood():
    # (5,5) at t=0; (5,6) at t=50 is its neighbour within 100 -> kept; (7,7) isolated -> dropped;
    # (5,5) again at t=500 sees (5,6) 450 ago -> dropped; (6,5) at 520 sees (5,5) 20 ago -> kept
    ev = make_events([5, 5, 7, 5, 6], [5, 6, 7, 5, 5], [0, 50, 60, 500, 520], [1, 1, 0, 1, 0])
    np.testing.assert_array_equal(denoise_mask(ev, 100), [False, True, False, False, True])


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_refractory_equals_tonic_for_events_after_zero(layout):
    ev = late(random_events(4000, LAYOUTS[layout], seed=4), 1)
    ours = refractory_period(ev, 2000)
    np.testing.assert_array_equal(ours, tonic_transforms.RefractoryPeriod(2000)(ev))
    assert 0 < len(ours) < len(ev)


def test_tonic_refractory_drops_first_events_at_time_zero():
    ev = make_events([0, 1, 0], [0, 0, 0], [0, 0, 5], [1, 1, 1])
    assert len(tonic_transforms.RefractoryPeriod(10)(ev)) == 0
    np.testing.assert_array_equal(refractory_period(ev, 10), ev[:2])


def test_refractory_counts_dropped_events_as_tonic_does():
    # t=0 kept, t=8 dropped (8 <= 10), t=16 dropped: 8 after the dropped one, t=30 kept
    ev = make_events([3, 3, 3, 3], [2, 2, 2, 2], [0, 8, 16, 30], [1, 0, 1, 1])
    np.testing.assert_array_equal(refractory_period(ev, 10)["t"], [0, 30])


def test_transforms_return_the_callers_dtype_and_sample_delta_like_tonic():
    ev = late(random_events(2000, LAYOUTS["shd"], seed=6), 10_000)
    shd = tonic_dataset_layout(ev, audio=True)
    out = transforms.Denoise(filter_time=3000)(shd)  # tonic's Denoise needs a y field
    assert out.dtype == shd.dtype
    np.testing.assert_array_equal(out, tonic_dataset_layout(denoise(ev, 3000), audio=True))
    np.random.seed(11)
    theirs = tonic_transforms.RefractoryPeriod(delta=(100, 5000))(ev)
    np.random.seed(11)
    np.testing.assert_array_equal(transforms.RefractoryPeriod(delta=(100, 5000))(ev), theirs)


def test_filters_on_empty_and_bad_input():
    assert len(denoise(empty_events(), 100)) == 0
    assert len(refractory_period(empty_events(), 100)) == 0
    unsorted = make_events([0, 0], [0, 0], [5, 1], [1, 1])
    with pytest.raises(EventsError, match="event 1 has t=1"):
        denoise(unsorted, 100)
    with pytest.raises(EventsError, match="'x' out of the sensor"):
        refractory_period(make_events([40], [0], [1], [1]), 100, sensor_size=(34, 34, 2))
