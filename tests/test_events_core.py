"""The event array: construction and boundary validation."""

import numpy as np
import pytest

from eventsnn.events import (
    EVENT_DTYPE,
    EventsError,
    Recording,
    copy_events,
    core,
    join_events,
    make_events,
    validate,
)


def test_make_events_has_tonic_dtype():
    ev = make_events([0, 1], [2, 3], [10, 20], [1, 0])
    assert ev.dtype == EVENT_DTYPE
    assert ev["p"].tolist() == [True, False]
    assert ev["t"].dtype == np.int64


def test_make_events_rejects_ragged_columns():
    with pytest.raises(EventsError, match="'x' has 1 values"):
        make_events([0], [2, 3], [10, 20], [1, 0])


def test_validate_names_first_unsorted_index():
    ev = make_events([0, 0, 0, 0], [0, 0, 0, 0], [1, 5, 3, 2], [0, 0, 0, 0])
    with pytest.raises(EventsError, match="event 2 has t=3 < t=5"):
        validate(ev)


def test_validate_names_field_and_index_out_of_sensor():
    ev = make_events([0, 1, 34], [0, 0, 0], [1, 2, 3], [0, 0, 0])
    with pytest.raises(EventsError, match="'x' out of the sensor: event 2 has x=34"):
        validate(ev, (34, 34, 2))
    ev = make_events([0, 1, 2], [0, -1, 0], [1, 2, 3], [0, 0, 0])
    with pytest.raises(EventsError, match="'y' out of the sensor: event 1"):
        validate(ev, (34, 34, 2))


def test_validate_rejects_wrong_dtype_and_plain_arrays():
    wrong = np.zeros(3, dtype=[("x", "<i8"), ("y", "<i2"), ("t", "<i8"), ("p", "?")])
    with pytest.raises(EventsError, match="'x' has dtype int64"):
        validate(wrong)
    with pytest.raises(EventsError, match="structured numpy array"):
        validate(np.zeros((3, 4)))


def test_validate_accepts_empty_and_epoch_timestamps():
    assert len(validate(np.empty(0, EVENT_DTYPE), (34, 34, 2))) == 0
    epoch = 1_700_000_000_000_000
    ev = make_events([0, 1], [0, 0], [epoch, epoch + 1], [1, 1])
    assert validate(ev, (2, 1, 2))["t"][0] == epoch


def test_recording_duration():
    ev = make_events([0, 1], [0, 0], [100, 350], [1, 1])
    assert Recording(ev, (2, 1, 2)).duration_us == 250


def _messages(events, sensor_size):
    try:
        validate(events, sensor_size)
    except EventsError as error:
        return str(error)
    return None


@pytest.mark.parametrize(
    "damage",
    [
        {},
        {"t": [(70_000, -1)]},
        {"x": [(66_000, 34)]},
        {"y": [(65_537, -1)]},
        {"x": [(1000, 40)], "t": [(90_000, -5)]},  # the unsorted event is named first
        {"x": [(500, -1)]},  # negative: allowed without a sensor size
    ],
)
def test_validate_of_long_arrays_by_the_kernel_equals_numpys_checks(damage, monkeypatch):
    """From SCAN_MIN_EVENTS a numba pass checks first; the verdict and message must not change."""
    n = core.SCAN_MIN_EVENTS + 40_000
    rng = np.random.default_rng(3)
    events = make_events(
        rng.integers(0, 34, n), rng.integers(0, 34, n), np.arange(n) * 10, rng.integers(0, 2, n)
    )
    for name, changes in damage.items():
        for index, value in changes:
            events[name][index] = value if name != "t" else events["t"][index - 1] + value
    for sensor_size in ((34, 34, 2), None):
        for array in (events, events[1:]):  # a contiguous slice too: indices are its own
            by_kernel = _messages(array, sensor_size)
            monkeypatch.setattr(core, "SCAN_MIN_EVENTS", 10**12)
            assert by_kernel == _messages(array, sensor_size)
            monkeypatch.undo()
    assert (by_kernel is None) == ("t" not in damage)
    assert core._all_valid(events, (34, 34, 2)) == (not damage)  # the kernel's own verdict


def test_join_and_copy_events_equal_numpys_field_by_field_results():
    rng = np.random.default_rng(3)
    events = make_events(
        rng.integers(0, 34, 50), rng.integers(0, 34, 50), np.arange(50) * 7, rng.integers(0, 2, 50)
    )
    pieces = [events[:0], events[:13], events[13:14], events[14::2], events[15::2]]
    joined = join_events(pieces)
    assert joined.dtype == EVENT_DTYPE
    assert np.array_equal(joined, np.concatenate(pieces))
    copied = copy_events(events[::3])
    assert copied.dtype == EVENT_DTYPE and np.array_equal(copied, events[::3])
    copied["t"] += 1  # a copy, not a view
    assert np.array_equal(events["t"], np.arange(50) * 7)


def test_join_events_of_one_piece_or_none_copies_nothing_and_other_dtypes_join_as_numpy():
    events = make_events([1, 2], [3, 4], [5, 6], [0, 1])
    assert join_events([events]) is events
    empty = join_events([])
    assert empty.dtype == EVENT_DTYPE and len(empty) == 0
    wide = np.zeros(2, dtype=[("x", "<i8"), ("y", "<i8"), ("t", "<i8"), ("p", "<i8")])
    assert join_events([wide, wide]).dtype == wide.dtype
    assert copy_events(wide).dtype == wide.dtype


@pytest.mark.parametrize("t", [[-np.inf, 5.0], [np.inf], [1e19], [-1e19]])
def test_whole_floats_beyond_int64_are_an_error_not_wrapped(t):
    with pytest.raises(
        EventsError, match=r"field 't' at index 0 is -?(inf|1e\+19), which does not"
    ):
        make_events([0] * len(t), [0] * len(t), t, [1] * len(t))
