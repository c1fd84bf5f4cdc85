"""Event file I/O: round trips, third-party files, damage, lazy ranges, chunks, wrap-arounds."""

from __future__ import annotations

import struct
import warnings
from pathlib import Path

import expelliarmus
import faery
import h5py
import numpy as np
import pytest

from eventsnn.events import (
    EVENT_DTYPE,
    EventsError,
    SensorSizeError,
    empty_events,
    iter_chunks,
    iter_packets,
    make_events,
    read,
    time_index,
    write,
)
from eventsnn.events.formats import base, gen1_dat, hdf5, npy
from eventsnn.events.formats.regroup import by_count, by_duration

SENSOR = (40, 30, 2)
EPOCH_US = 1_700_000_000_000_000  # 2023-11-14 in unix microseconds, as DV writes AEDAT4
SUFFIX = {
    "aedat4": "aedat4",
    "evt2": "raw",
    "evt3": "raw",
    "dat": "dat",
    "es": "es",
    "csv": "csv",
    "hdf5": "h5",
    "npy": "npy",
}
FAERY_FORMATS = ("aedat4", "evt2", "evt3", "dat", "es", "csv")


def random_events(n: int = 3000, t0: int = 0, span_us: int = 1_000_000, seed: int = 0):
    """Sorted events with repeated timestamps, inside SENSOR."""
    rng = np.random.default_rng(seed)
    t = np.sort(rng.integers(0, span_us, n)) + t0
    t[1::7] = t[0::7][: len(t[1::7])]  # some exact repeats
    t.sort()
    return make_events(
        rng.integers(0, SENSOR[0], n), rng.integers(0, SENSOR[1], n), t, rng.integers(0, 2, n)
    )


def start_for(name: str) -> int:
    """ES stores time from zero (one byte per 127 us of silence): keep its events near 0."""
    return 5_000 if name == "es" else EPOCH_US


def to_faery(events: np.ndarray) -> np.ndarray:
    out = np.zeros(len(events), dtype=faery.EVENTS_DTYPE)
    for name in ("t", "x", "y"):
        out[name] = events[name]
    out["on"] = events["p"]
    return out


def written(tmp_path, name: str, events: np.ndarray, stem: str = "rec"):
    path = tmp_path / f"{stem}.{SUFFIX[name]}"
    write(path, events, SENSOR, format=name)
    return path


# --- round trips and third-party files ---------------------------------------------------


@pytest.mark.parametrize("name", list(SUFFIX))
def test_round_trip_is_exact_in_every_writable_format(tmp_path, name):
    events = random_events(t0=start_for(name))
    recording = read(written(tmp_path, name, events))
    assert recording.format == ("hdf5" if name == "hdf5" else name)
    assert recording.sensor_size == SENSOR
    assert recording.events.dtype == events.dtype
    np.testing.assert_array_equal(recording.events, events)
    assert not recording.truncated


@pytest.mark.parametrize("name", ["hdf5", "npy"])
def test_own_formats_keep_any_sensor_size_and_empty_recordings(tmp_path, name):
    audio = make_events([0, 63, 5], [0, 0, 0], [-20, 7, 7], [1, 0, 1])  # negative t is fine here
    path = tmp_path / f"audio.{SUFFIX[name]}"
    write(path, audio, (64, 1, 1))
    recording = read(path)
    assert recording.sensor_size == (64, 1, 1)
    np.testing.assert_array_equal(recording.events, audio)
    write(path, audio[:0], (64, 1, 1))
    assert len(read(path).events) == 0


@pytest.mark.parametrize("name", FAERY_FORMATS)
def test_file_written_by_faery_reads_event_for_event(tmp_path, name):
    events = random_events(t0=start_for(name), seed=1)
    path = tmp_path / f"by_faery.{SUFFIX[name]}"
    options = {"version": name} if name.startswith("evt") else {}
    if name == "es":
        options["zero_t0"] = False
    faery.events_stream_from_array(to_faery(events), SENSOR[:2]).to_file(path, **options)
    recording = read(path)
    assert recording.sensor_size == SENSOR
    for field in ("x", "y", "t"):
        np.testing.assert_array_equal(recording.events[field], events[field].astype(np.int64))
    np.testing.assert_array_equal(recording.events["p"], events["p"])


def test_gen1_dat_without_geometry_reads_through_expelliarmus(tmp_path):
    events = random_events(seed=2)
    gen1 = np.zeros(len(events), dtype=[("t", "<i8"), ("x", "<i2"), ("y", "<i2"), ("p", "u1")])
    for field in ("t", "x", "y"):
        gen1[field] = events[field]
    gen1["p"] = events["p"]
    path = tmp_path / "drive_td.dat"
    expelliarmus.Wizard(encoding="dat").save(path, gen1)
    assert b"Width" not in path.read_bytes()  # no geometry in the header

    inferred = read(path)
    np.testing.assert_array_equal(inferred.events, events)
    expected_size = (int(events["x"].max()) + 1, int(events["y"].max()) + 1, 2)
    assert inferred.sensor_size == expected_size
    assert inferred.metadata["sensor_size_source"] == "inferred from max coordinates"
    assert inferred.metadata["event_type"].startswith("td")

    given = read(path, sensor_size=(304, 240, 2))
    assert given.sensor_size == (304, 240, 2)
    assert given.metadata["sensor_size_source"] == "argument"
    with pytest.raises(EventsError, match="field 'x' out of the sensor"):
        read(path, sensor_size=(10, 10, 2))


def test_headerless_csv_takes_the_given_sensor_size(tmp_path):
    path = tmp_path / "plain.csv"
    path.write_text("10,1,2,1\n20,3,4,0\n")
    recording = read(path, sensor_size=(8, 6, 2))
    assert recording.sensor_size == (8, 6, 2)
    np.testing.assert_array_equal(recording.events, make_events([1, 3], [2, 4], [10, 20], [1, 0]))


def test_csv_header_names_the_columns_in_any_order(tmp_path):
    path = tmp_path / "named.csv"
    path.write_text("x,y,t,p\n3,2,100,1\n4,1,200,0\n")
    recording = read(path, sensor_size=(8, 6, 2))
    np.testing.assert_array_equal(recording.events, make_events([3, 4], [2, 1], [100, 200], [1, 0]))
    path.write_text("polarity,t,y@6,x@8\n1,100,2,3\n")
    recording = read(path)
    assert recording.sensor_size == (8, 6, 2)
    np.testing.assert_array_equal(recording.events, make_events([3], [2], [100], [1]))
    path.write_text("time,x,y,p\n100,3,2,1\n")
    with pytest.raises(EventsError, match="named.csv: CSV header .* no column for 't'"):
        read(path)


def test_given_sensor_size_must_agree_with_the_file(tmp_path):
    path = written(tmp_path, "evt3", random_events())
    with pytest.raises(EventsError, match="rec.raw.*sensor size"):
        read(path, sensor_size=(41, 30, 2))


def test_explicit_evt_version_must_match_the_header(tmp_path):
    path = written(tmp_path, "evt2", random_events())
    assert read(path).format == "evt2"
    assert read(path, format="evt2").format == "evt2"
    with pytest.raises(EventsError, match="header says evt2"):
        read(path, format="evt3")


# --- damaged and unknown files -----------------------------------------------------------


@pytest.mark.parametrize(("name", "cut"), [("evt2", 3), ("evt3", 1), ("dat", 5), ("es", 2)])
def test_cut_last_record_is_an_error_or_a_flagged_partial_read(tmp_path, name, cut):
    events = random_events(t0=start_for(name))
    path = written(tmp_path, name, events)
    data = path.read_bytes()
    path.write_bytes(data[:-cut])
    with pytest.raises(EventsError, match=rf"{path.name}.*truncated"):
        read(path)
    with pytest.raises(EventsError, match="truncated"):
        next(iter_chunks(path, n_events=100))
    kept = f"truncated.*; keeping the {len(events) - 1} events decoded before it"
    with pytest.warns(UserWarning, match=kept):
        recording = read(path, partial=True)
    assert recording.truncated
    np.testing.assert_array_equal(recording.events, events[:-1])  # only the cut event is lost


def test_iter_chunks_partial_streams_the_whole_records(tmp_path):
    events = random_events(seed=7)
    path = written(tmp_path, "dat", events)
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.warns(UserWarning, match="rec.dat: truncated"):
        chunks = list(iter_chunks(path, n_events=1000, partial=True))
    np.testing.assert_array_equal(np.concatenate(chunks), events[:-1])


def test_atis_event_stream_keeps_dvs_events_and_detects_a_cut(tmp_path):
    atis_dtype = [("t", "<u8"), ("x", "<u2"), ("y", "<u2"), ("exposure", "?"), ("polarity", "?")]
    atis = np.zeros(5, dtype=atis_dtype)
    atis["t"] = [1, 5, 300, 301, 1000]
    atis["x"] = [1, 2, 3, 4, 5]
    atis["y"] = [0, 1, 2, 3, 4]
    atis["exposure"] = [0, 1, 0, 1, 0]
    atis["polarity"] = [1, 0, 0, 1, 1]
    path = tmp_path / "atis.es"
    with faery.es.Encoder(path, "atis", False, (8, 8)) as encoder:
        encoder.write(atis)
    recording = read(path)
    assert recording.metadata["event_type"] == "atis"
    # exposure measurements dropped; Event Stream counts y from the bottom row
    expected = make_events([1, 3, 5], [7 - 0, 7 - 2, 7 - 4], [1, 300, 1000], [1, 0, 1])
    np.testing.assert_array_equal(recording.events, expected)
    path.write_bytes(path.read_bytes()[:-2])
    with pytest.raises(EventsError, match="atis.es: truncated: the file ends 3 byte"):
        read(path)


def test_cut_gen1_dat_is_detected(tmp_path):
    path = tmp_path / "cut_td.dat"
    gen1 = np.zeros(10, dtype=[("t", "<i8"), ("x", "<i2"), ("y", "<i2"), ("p", "u1")])
    gen1["t"] = np.arange(10) * 100
    expelliarmus.Wizard(encoding="dat").save(path, gen1)
    path.write_bytes(path.read_bytes()[:-4])
    with pytest.raises(EventsError, match="cut_td.dat.*truncated.*4 byte"):
        read(path)


@pytest.mark.parametrize("name", ["aedat4", "csv", "hdf5", "npy"])
def test_file_cut_in_half_raises_naming_the_file(tmp_path, name):
    path = written(tmp_path, name, random_events(t0=start_for(name)))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2 + 3])
    with pytest.raises(EventsError, match=path.name):
        read(path)


def test_partial_read_keeps_the_events_before_a_decoding_error(tmp_path):
    events = random_events(n=30_000)  # faery decodes CSV in packets of about 64 kB
    path = written(tmp_path, "csv", events)
    data = path.read_bytes()
    cut = data.index(b"\n", 3 * len(data) // 4) + 1
    path.write_bytes(data[:cut] + b"1,2\n" + data[cut:])
    with pytest.raises(EventsError, match="rec.csv"):
        read(path)
    with pytest.warns(UserWarning, match="rec.csv"):
        recording = read(path, partial=True)
    assert recording.truncated and 0 < len(recording.events) < len(events)
    np.testing.assert_array_equal(recording.events, events[: len(recording.events)])


@pytest.mark.parametrize("suffix", sorted(set(SUFFIX.values()) | {"hdf5"}))
def test_garbage_raises_naming_the_file(tmp_path, suffix):
    path = tmp_path / f"garbage.{suffix}"
    path.write_bytes(np.random.default_rng(3).bytes(4096))
    with pytest.raises(EventsError, match=f"garbage.{suffix}"):
        read(path)


def test_empty_missing_and_unknown_files(tmp_path):
    empty = tmp_path / "empty.raw"
    empty.write_bytes(b"")
    with pytest.raises(EventsError, match="empty.raw: empty file"):
        read(empty)
    with pytest.raises(EventsError, match="nothing.es: no such file"):
        read(tmp_path / "nothing.es")
    with pytest.raises(EventsError, match="notes.txt: unknown event file suffix"):
        read(tmp_path / "notes.txt")
    with pytest.raises(EventsError, match="unknown format 'mp4'"):
        read(empty, format="mp4")


def test_unsupported_dat_event_type(tmp_path):
    path = tmp_path / "imu.dat"
    path.write_bytes(b"% Version 2\n" + bytes([0x0E, 8]) + bytes(16))
    with pytest.raises(EventsError, match="imu.dat: unsupported DAT event type 0x0E"):
        read(path)


def with_bad_event(tmp_path, name: str, field: str, bad: int) -> tuple[Path, np.ndarray, str]:
    """30k events in a file whose event `bad` is off SENSOR (field x) or earlier than the one
    before it (field t), written past `write` (which refuses both); the error to expect."""
    events = random_events(n=30_000, seed=8)
    t = events["t"]
    if field == "x":
        value = SENSOR[0]
        error = (
            f"field 'x' out of the sensor: event {bad} has x=40, sensor size {SENSOR} allows 0..39"
        )
    else:
        value, before = t[bad - 1] - 1, f"t={t[bad - 1]} of event {bad - 1}"
        error = f"field 't' is not sorted: event {bad} has t={value} < {before}"
    path = tmp_path / f"bad.{SUFFIX[name]}"
    if name == "hdf5":
        write(path, events, SENSOR)
        with h5py.File(path, "r+") as f:
            f[hdf5.GROUP][field][bad] = value
    events[field][bad] = value
    if name == "npy":
        np.save(path, events)  # no sidecar: the sensor size is the one given
    elif name == "dat":  # Gen1, no geometry in the header: the sensor size is the one given
        gen1 = np.zeros(len(events), dtype=[("t", "<i8"), ("x", "<i2"), ("y", "<i2"), ("p", "u1")])
        for column in ("t", "x", "y", "p"):
            gen1[column] = events[column]
        expelliarmus.Wizard(encoding="dat").save(path, gen1)
    return path, events, f"{path}: {error}"


@pytest.mark.parametrize(
    ("name", "field"), [("npy", "x"), ("npy", "t"), ("hdf5", "x"), ("hdf5", "t"), ("dat", "x")]
)  # expelliarmus would make a DAT's timestamps monotonic
@pytest.mark.parametrize("bad", [20_000, 23_456])  # the first of a packet of 1000, inside one
def test_a_bad_event_is_named_by_its_index_in_the_file_whatever_the_start(
    tmp_path, monkeypatch, name, field, bad
):
    """Read from a time in the middle (as a piece of a split recording is) or from the start,
    the error names the file and the bad event's index in the whole file, in the same words."""
    for module in (hdf5, npy, gen1_dat):
        monkeypatch.setattr(module, "CHUNK_EVENTS", 1000)
    path, events, error = with_bad_event(tmp_path, name, field, bad)
    for t_start in (None, int(events["t"][bad - 1_700])):
        with pytest.raises(EventsError) as raised:
            list(iter_packets(path, sensor_size=SENSOR, t_start=t_start))
        assert str(raised.value) == error
        with pytest.raises(EventsError) as raised:
            read(path, sensor_size=SENSOR, t_start=t_start)
        assert str(raised.value) == error


def test_write_rejects_bad_events_naming_the_file(tmp_path):
    events = random_events()
    with pytest.raises(EventsError, match="out.h5: cannot write: field 't' is not sorted"):
        write(tmp_path / "out.h5", events[::-1], SENSOR)
    with pytest.raises(EventsError, match="out.raw: cannot write: field 'x' out of the sensor"):
        write(tmp_path / "out.raw", events, (5, 30, 2))
    with pytest.raises(EventsError, match="out.es: Event Stream stores time from 0"):
        write(tmp_path / "out.es", random_events(t0=EPOCH_US), SENSOR)
    with pytest.raises(EventsError, match="out.raw: evt3 addresses pixels with 11 bits"):
        write(tmp_path / "out.raw", make_events([3000], [5], [10], [1]), (4000, 10, 2))
    with pytest.raises(EventsError, match="out.raw: cannot write evt2: the width must be"):
        write(tmp_path / "out.raw", make_events([3000], [5], [10], [1]), (4000, 10, 2), "evt2")
    with pytest.raises(EventsError, match="out.aedat4: aedat4 stores ON/OFF events"):
        write(tmp_path / "out.aedat4", events, (40, 30, 1))
    assert not list(tmp_path.iterdir())


# --- timestamps: wrap-arounds and epoch --------------------------------------------------


def evt3_bytes(events: np.ndarray, width: int, height: int) -> bytes:
    """EVT3 as a camera writes it (Prophesee spec): 16-bit little-endian words, TIME_HIGH
    (0x8, t[23:12]) for every 4096 us period from 0, then per event TIME_LOW (0x6, t[11:0]),
    ADDR_Y (0x0) and ADDR_X (0x2, polarity in bit 11)."""
    words = []
    period = 0
    for x, y, t, p in events.tolist():
        while period <= t >> 12:
            words.append(0x8000 | (period & 0xFFF))
            period += 1
        words += [0x6000 | (t & 0xFFF), 0x0000 | y, 0x2000 | (int(p) << 11) | x]
    header = f"% evt 3.0\n% format EVT3;width={width};height={height}\n% end\n".encode()
    return header + struct.pack(f"<{len(words)}H", *words)


def evt2_bytes(events: np.ndarray, width: int, height: int) -> bytes:
    """EVT2 by the Prophesee spec: TIME_HIGH (0x8, t[33:6]) when it changes, then CD_ON (0x1)
    or CD_OFF (0x0) with t[5:0] in bits 22-27, x in 11-21, y in 0-10; 32-bit words."""
    words = []
    high = None
    for x, y, t, p in events.tolist():
        if (t >> 6) & 0xFFFFFFF != high:
            high = (t >> 6) & 0xFFFFFFF
            words.append(0x80000000 | high)
        words.append((int(p) << 28) | ((t & 0x3F) << 22) | (x << 11) | y)
    header = f"% evt 2.0\n% format EVT2;width={width};height={height}\n% end\n".encode()
    return header + struct.pack(f"<{len(words)}I", *words)


def test_evt3_built_byte_by_byte_unwraps_its_24_bit_time(tmp_path):
    t = [2**24 - 4000, 2**24 - 1, 2**24, 2**24 + 4097, 2 * 2**24 - 3, 2 * 2**24 + 9000]
    events = make_events([1, 2, 3, 4, 5, 6], [6, 5, 4, 3, 2, 1], t, [1, 0, 1, 0, 1, 0])
    path = tmp_path / "wrap3.raw"
    path.write_bytes(evt3_bytes(events, 8, 8))
    recording = read(path)
    assert recording.format == "evt3" and recording.sensor_size == (8, 8, 2)
    np.testing.assert_array_equal(recording.events, events)


def test_evt2_built_byte_by_byte_unwraps_its_34_bit_time(tmp_path):
    t = [2**34 - 100, 2**34 - 1, 2**34 + 64, 2 * 2**34 - 5, 2 * 2**34 + 70]
    events = make_events([1, 2, 3, 4, 5], [0, 1, 2, 3, 4], t, [0, 1, 1, 0, 1])
    path = tmp_path / "wrap2.raw"
    path.write_bytes(evt2_bytes(events, 8, 8))
    recording = read(path)
    assert recording.format == "evt2"
    np.testing.assert_array_equal(recording.events, events)


def test_headerless_evt_needs_an_explicit_version(tmp_path):
    events = make_events([1, 7, 3], [2, 0, 5], [10, 70, 200], [1, 0, 1])
    data = evt2_bytes(events, 8, 8)
    path = tmp_path / "bare.raw"
    path.write_bytes(data[data.index(b"% end\n") + 6 :])
    with pytest.raises(EventsError, match="bare.raw: no EVT header"):
        read(path)
    recording = read(path, format="evt2", sensor_size=(8, 8, 2))
    np.testing.assert_array_equal(recording.events, events)
    assert recording.metadata["sensor_size_source"] == "argument"
    assert read(path, format="evt2").sensor_size == (8, 6, 2)  # inferred from max x, y


@pytest.mark.parametrize(
    ("name", "t"),
    [
        # EVT3 from an epoch start across three 24-bit wraps, with events on both sides of each
        # wrap as a camera writes them (faery's encoder needs that, see the next test)
        (
            "evt3",
            EPOCH_US
            + np.array([0, 2**24 - 1, 2**24, 2**25 - 9, 2**25, 3 * 2**24 - 2, 3 * 2**24 + 5]),
        ),
        # EVT2: the encoder writes the time words itself, so even long gaps survive
        ("evt2", EPOCH_US + np.array([0, 2**34 - 1, 2**34 + 1, 3 * 2**34 + 7, 2**37])),
        ("dat", EPOCH_US + np.array([0, 2**32 - 1, 2**32 + 1, 2**33 - 3, 2**33 + 5])),
        ("aedat4", EPOCH_US + np.array([0, 2**24, 2**34, 2**40])),
    ],
)
def test_wrap_arounds_and_epoch_times_survive_a_round_trip(tmp_path, name, t):
    events = make_events(np.arange(len(t)) % 40, np.arange(len(t)) % 30, t, np.arange(len(t)) % 2)
    recording = read(written(tmp_path, name, events))
    assert recording.events["t"].dtype == np.int64
    np.testing.assert_array_equal(recording.events, events)


@pytest.mark.parametrize(
    "t",
    [
        [0, 10, 10 + 2**24],  # a whole period of silence
        [0, 2**24 - 5000, 2**24 + 5],  # the period before the wrap is empty
        [0, 2**24 - 5, 2**24 + 4096],  # the period after the wrap is empty
    ],
)
def test_evt3_refuses_sparse_wraps_that_faery_would_lose(tmp_path, t):
    events = make_events([0, 1, 2], [0, 0, 0], t, [1, 1, 1])
    with pytest.raises(EventsError, match=r"rec.raw: evt3 .* wrap .*event 2"):
        written(tmp_path, "evt3", events)
    # faery itself writes such a file but reads the last event back at the wrong time
    path = tmp_path / "by_faery.raw"
    faery.events_stream_from_array(to_faery(events), SENSOR[:2]).to_file(path, version="evt3")
    assert read(path).events["t"][-1] != t[-1]


# --- lazy HDF5 ranges and chunks ---------------------------------------------------------


@pytest.mark.parametrize("name", ["hdf5", "npy"])
def test_time_range_read_equals_slicing_and_probes_logarithmically(tmp_path, name, monkeypatch):
    events = random_events(n=200_000, span_us=50_000_000, seed=4)
    path = written(tmp_path, name, events)
    probes = []
    original = base._LazyColumn.__getitem__
    monkeypatch.setattr(
        base._LazyColumn, "__getitem__", lambda self, i: probes.append(i) or original(self, i)
    )
    t = events["t"]
    for t_start, t_stop in [
        (None, None),
        (int(t[1000]), int(t[1000])),  # empty range at an existing timestamp
        (int(t[1000]), int(t[150_000])),  # both ends on existing (repeated) timestamps
        (int(t[0]) - 5, int(t[0]) + 3),
        (12_345_678, None),
        (None, 40_000_001),
        (int(t[-1]) + 1, int(t[-1]) + 10),
    ]:
        probes.clear()
        lo = -np.inf if t_start is None else t_start
        hi = np.inf if t_stop is None else t_stop
        expected = events[(t >= lo) & (t < hi)]
        recording = read(path, t_start=t_start, t_stop=t_stop)
        np.testing.assert_array_equal(recording.events, expected)
        assert len(probes) <= 2 * (int(np.log2(len(events))) + 1)


def test_time_range_on_a_streamed_format_equals_slicing(tmp_path):
    events = random_events(seed=5)
    path = written(tmp_path, "evt3", events)
    t_start, t_stop = int(events["t"][500]), int(events["t"][2500])
    expected = events[(events["t"] >= t_start) & (events["t"] < t_stop)]
    np.testing.assert_array_equal(read(path, t_start=t_start, t_stop=t_stop).events, expected)
    with pytest.raises(EventsError, match="t_stop=1 is before t_start=2"):
        read(path, t_start=2, t_stop=1)


@pytest.mark.parametrize("name", list(SUFFIX))
def test_chunks_concatenate_to_the_whole_file_with_exact_windows(tmp_path, name, monkeypatch):
    for module in (hdf5, npy):  # several packets for hdf5/npy too
        monkeypatch.setattr(module, "CHUNK_EVENTS", 1000)
    events = random_events(t0=start_for(name), seed=6)
    path = written(tmp_path, name, events)
    whole = read(path).events
    t0 = int(whole["t"][0])
    duration = 70_001
    windows = list(iter_chunks(path, duration_us=duration))
    assert len(windows) == (int(whole["t"][-1]) - t0) // duration + 1
    for k, window in enumerate(windows):
        assert np.all(window["t"] >= t0 + k * duration)
        assert np.all(window["t"] < t0 + (k + 1) * duration)
    np.testing.assert_array_equal(np.concatenate(windows), whole)
    counted = list(iter_chunks(path, n_events=701))
    assert [len(c) for c in counted] == [701] * (len(whole) // 701) + [len(whole) % 701]
    np.testing.assert_array_equal(np.concatenate(counted), whole)


def test_regroup_by_duration_by_hand():
    packets = [make_events([0, 0, 0], [0] * 3, [0, 1, 2], [1] * 3), make_events([0], [0], [5], [0])]
    packets.append(make_events([0, 0], [0, 0], [12, 13], [1, 1]))
    windows = [w["t"].tolist() for w in by_duration(iter(packets), 3)]
    assert windows == [[0, 1, 2], [5], [], [], [12, 13]]
    windows = [w["t"].tolist() for w in by_duration(iter(packets), 5)]
    assert windows == [[0, 1, 2], [5], [12, 13]]
    assert [w["t"].tolist() for w in by_count(iter(packets), 4)] == [[0, 1, 2, 5], [12, 13]]
    assert list(by_count(iter([]), 4)) == [] and list(by_duration(iter([]), 4)) == []


def test_iter_chunks_needs_exactly_one_window_size(tmp_path):
    path = written(tmp_path, "npy", random_events())
    for kwargs in ({}, {"duration_us": 5, "n_events": 5}, {"n_events": 0}, {"duration_us": 1.5}):
        with pytest.raises(EventsError):
            next(iter_chunks(path, **kwargs))


def test_no_warning_for_whole_files(tmp_path):
    path = written(tmp_path, "es", random_events(t0=5_000))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not read(path).truncated


def test_npy_columns_that_do_not_fit_are_refused_not_wrapped(tmp_path):
    def saved(name: str, x_type: str, t_type: str, x: int, t: float, p: int) -> Path:
        dtype = [("x", x_type), ("y", "<i4"), ("t", t_type), ("p", "<i8")]
        np.save(tmp_path / name, np.array([(x, 1, t, p), (2, 2, 20, 1)], dtype=dtype))
        return tmp_path / name

    with pytest.raises(EventsError, match=r"wide.npy: field 'x' at index 0 is 70000"):
        read(saved("wide.npy", "<i4", "<i8", 70000, 10, 1))
    with pytest.raises(EventsError, match=r"seconds.npy: field 't' holds float64"):
        read(saved("seconds.npy", "<i4", "<f8", 1, 0.5, 1))
    assert read(saved("signed.npy", "<i4", "<i8", 1, 10, -1)).events["p"].tolist() == [False, True]
    with pytest.raises(EventsError, match=r"field 'y' at index 1 is -40000"):
        make_events([1, 2], [0, -40000], [0, 1], [1, 1])


@pytest.fixture(params=["read whole", "memory-mapped"])
def npy_reading(request, monkeypatch):
    """Small .npy files in the event dtype are read whole; larger ones are memory-mapped."""
    if request.param == "memory-mapped":
        monkeypatch.setattr(npy, "_WHOLE_READ_BYTES", 0)
    return request.param


def test_npy_reads_alike_whole_and_memory_mapped(tmp_path, npy_reading):
    events = random_events(n=5000, seed=9)
    path = written(tmp_path, "npy", events)
    assert (npy._read_small_events(path) is not None) == (npy_reading == "read whole")
    np.testing.assert_array_equal(read(path).events, events)
    t_start, t_stop = int(events["t"][1000]), int(events["t"][4000])
    inside = (events["t"] >= t_start) & (events["t"] < t_stop)
    np.testing.assert_array_equal(read(path, t_start=t_start, t_stop=t_stop).events, events[inside])
    index = time_index(path)
    assert (index.first_t, index.last_t) == (int(events["t"][0]), int(events["t"][-1]))
    assert index.events_before(t_start) == np.searchsorted(events["t"], t_start)


@pytest.mark.parametrize("version", [(1, 0), (2, 0), (3, 0)])
def test_npy_of_every_header_version_is_read_whole(tmp_path, version):
    events = random_events(n=100, seed=10)
    path = tmp_path / "v.npy"
    with open(path, "wb") as file:
        np.lib.format.write_array(file, events, version=version)
    assert npy._read_small_events(path) is not None
    np.testing.assert_array_equal(read(path, sensor_size=SENSOR).events, events)


def test_npy_read_whole_only_in_numpys_own_header_for_the_event_dtype(tmp_path):
    """Other dtypes, byte orders and layouts go through numpy.load; so do larger files."""
    events = random_events(n=50, seed=11)
    others = {
        "big-endian": events.astype(EVENT_DTYPE.newbyteorder(">")),
        "tonic's int64 fields": events.astype([(n, "<i8") for n in ("x", "y", "t", "p")]),
        "Fortran order": np.asfortranarray(events[:, None]),
    }
    for name, array in others.items():
        path = tmp_path / f"{name}.npy"
        np.save(path, array)
        assert npy._read_small_events(path) is None, name
    path = tmp_path / "padded16.npy"  # numpy < 1.9 padded headers to 16 bytes, not 64
    descr = np.lib.format.dtype_to_descr(EVENT_DTYPE)
    header = f"{{'descr': {descr!r}, 'fortran_order': False, 'shape': (50,), }}"
    header += " " * (-(10 + len(header) + 1) % 16) + "\n"
    path.write_bytes(b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little")
                     + header.encode() + events.tobytes())  # fmt: skip
    np.testing.assert_array_equal(npy._read_small_events(path)[0], events)
    empty = written(tmp_path, "npy", empty_events(), stem="empty")
    assert len(npy._read_small_events(empty)[0]) == 0


def test_a_truncated_npy_is_an_error_naming_the_file_or_a_partial_read(tmp_path, npy_reading):
    events = random_events(n=3000)
    path = written(tmp_path, "npy", events)
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(EventsError, match=r"rec\.npy: truncated: the header says 3000 events, "
                       r"the file holds 2999"):  # fmt: skip
        read(path)
    with pytest.warns(UserWarning, match="holds 2999; keeping the 2999 events decoded before it"):
        recording = read(path, partial=True)
    assert recording.truncated
    np.testing.assert_array_equal(recording.events, events[:-1])
    data = path.read_bytes()
    path.write_bytes(data[: data.index(b"\n") + 5])  # the header and no whole record
    with pytest.warns(UserWarning, match="the file holds 0; keeping the 0 events"):
        assert len(read(path, partial=True).events) == 0


def test_npy_in_the_event_dtype_reads_polarity_bytes_as_0_or_1(tmp_path, npy_reading):
    """Such files are read as raw rows: a polarity byte of 2 (written by another tool as a
    bool) must still come out as 1, or it would index a third polarity plane."""
    events = random_events(n=3000, seed=8)
    path = written(tmp_path, "npy", events)
    stored = np.load(path, mmap_mode="r+")
    stored["p"].view(np.uint8)[::7] = 2
    stored.flush()
    del stored
    polarity = read(path).events["p"]
    assert set(polarity.view(np.uint8).tolist()) <= {0, 1}
    expected = events["p"].copy()
    expected[::7] = True
    np.testing.assert_array_equal(polarity, expected)


@pytest.mark.parametrize("name", sorted(SUFFIX))
def test_an_empty_recording_round_trips_in_every_format(tmp_path, name):
    path = tmp_path / f"empty.{SUFFIX[name]}"
    write(path, empty_events(), SENSOR)
    recording = read(path, sensor_size=SENSOR)
    assert len(recording.events) == 0 and recording.sensor_size == SENSOR


def _h5_with_column(tmp_path: Path, name: str, values: np.ndarray) -> Path:
    """An eventsnn .h5 of 3 events whose column `name` is stored as `values` (another tool's
    types: the layout names int16/int64/uint8, but HDF5 takes any)."""
    path = tmp_path / "other.h5"
    write(path, make_events([0, 1, 2], [0, 1, 2], [10, 20, 30], [1, 0, 1]), (4, 4, 2))
    with h5py.File(path, "a") as file:
        del file[hdf5.GROUP][name]
        file[hdf5.GROUP].create_dataset(name, data=values)
    return path


def test_hdf5_columns_of_other_integer_types_read_as_npy_columns_do(tmp_path):
    """As in .npy files and make_events: a positive polarity is ON (int8 -1 is OFF, not ON),
    and values that do not fit the event dtype are an error, not wrapped around."""
    p = read(_h5_with_column(tmp_path, "p", np.array([1, -1, 1], np.int8))).events["p"]
    assert p.tolist() == [True, False, True]
    x = read(_h5_with_column(tmp_path, "x", np.array([0, 3, 2], np.int32))).events["x"]
    assert x.tolist() == [0, 3, 2]
    with pytest.raises(EventsError, match=r"other.h5: field 'x' at index 1 is 65537, which does"):
        read(_h5_with_column(tmp_path, "x", np.array([0, 65537, 2], np.int32)))
    with pytest.raises(EventsError, match=r"other.h5: field 't' at index 2 is 9223372036854775813"):
        read(_h5_with_column(tmp_path, "t", np.array([10, 20, 2**63 + 5], np.uint64)))
    with pytest.raises(EventsError, match=r"/events/t holds float64, not integers"):
        read(_h5_with_column(tmp_path, "t", np.array([10.7, 20.2, 30.9])))


def test_an_event_outside_a_given_sensor_size_is_a_sensor_size_error_not_damage(tmp_path):
    """Files that state no size (a plain CSV, EVT without geometry) take the caller's: an event
    outside it is named as in any other format, not taken for a corrupt file."""
    csv = tmp_path / "plain.csv"
    csv.write_text("10,1,1,1\n20,12,3,0\n30,2,2,1\n")  # t,x,y,on without a header
    raw = tmp_path / "bare.raw"
    write(raw, make_events([1, 12, 2], [1, 3, 2], [10, 20, 30], [1, 0, 1]), (16, 16, 2))
    lines = raw.read_bytes().split(b"\n")
    raw.write_bytes(b"\n".join(line for line in lines if b"geometry" not in line
                               and b"width=" not in line))  # fmt: skip
    wide = tmp_path / "wide.csv"
    wide.write_text("10,1,1,1\n20,40000,3,0\n")  # x past int16: refused, not wrapped around
    with pytest.raises(EventsError, match=r"wide.csv: cannot decode: x overflow \(x=40000"):
        read(wide, sensor_size=(100, 100, 2))
    for path in (csv, raw):
        assert read(path).events["x"].tolist() == [1, 12, 2]
        with pytest.raises(SensorSizeError, match=rf"{path.name}: field 'x' out of the sensor: "
                           r"event 1 has x=12, sensor size \(8, 8, 2\)"):  # fmt: skip
            read(path, sensor_size=(8, 8, 2))
