"""`summarize` and `eventsnn info`: hand-computed numbers, errors and exit codes."""

from __future__ import annotations

import numpy as np
import pytest

from eventsnn.events import Recording, empty_events, make_events, summarize, write
from pipelines.cli import main

# 4 events over exactly 1 s: 3 ON, 1 OFF
EVENTS = make_events([0, 9, 3, 4], [0, 7, 2, 1], [1_000, 2_000, 3_000, 1_001_000], [1, 1, 0, 1])
SENSOR = (10, 8, 2)


def test_summarize_by_hand():
    summary = summarize(Recording(EVENTS, SENSOR, format="hdf5", metadata={}))
    assert summary == {
        "path": None,
        "format": "hdf5",
        "sensor_size": (10, 8, 2),
        "sensor_size_source": None,
        "n_events": 4,
        "t_first_us": 1_000,
        "t_last_us": 1_001_000,
        "duration_us": 1_000_000,
        "event_rate_hz": 4.0,
        "n_on": 3,
        "n_off": 1,
        "on_fraction": 0.75,
        "truncated": False,
    }


def test_summarize_empty_and_instant_recordings():
    empty = summarize(Recording(empty_events(), SENSOR))
    assert (empty["n_events"], empty["duration_us"], empty["event_rate_hz"]) == (0, 0, None)
    assert empty["on_fraction"] is None and empty["t_first_us"] is None
    instant = summarize(Recording(EVENTS[:1], SENSOR))
    assert instant["event_rate_hz"] is None and instant["on_fraction"] == 1.0


@pytest.mark.parametrize("suffix", ["h5", "raw", "aedat4", "es", "csv", "dat", "npy"])
def test_info_prints_the_numbers(tmp_path, capsys, suffix):
    path = tmp_path / f"rec.{suffix}"
    write(path, EVENTS, SENSOR)
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == str(path)
    expected_format = {"h5": "hdf5", "raw": "evt3"}.get(suffix, suffix)
    assert f"format       {expected_format}\n" in out
    assert "sensor size  10 x 8 x 2 (file)" in out
    assert "events       4\n" in out
    assert "time range   1000 .. 1001000 us" in out
    assert "duration     1.000000 s" in out
    assert "event rate   4.0 events/s" in out
    assert "polarity     ON 3 (75.0 %), OFF 1 (25.0 %)" in out


def test_info_on_a_bad_file_prints_one_error_line_and_exits_1(tmp_path, capsys):
    good = tmp_path / "good.npy"
    write(good, EVENTS, SENSOR)
    bad = tmp_path / "bad.aedat4"
    bad.write_bytes(b"not an aedat4 file at all")
    assert main(["info", str(bad), str(good)]) == 1
    captured = capsys.readouterr()
    errors = captured.err.strip().splitlines()
    assert len(errors) == 1
    assert errors[0].startswith(f"eventsnn info: {bad}: not a readable AEDAT4 file")
    assert "events       4" in captured.out  # the good file is still described


def test_info_partial_describes_a_cut_file(tmp_path, capsys):
    path = tmp_path / "cut.raw"
    many = make_events(np.arange(100) % 10, np.arange(100) % 8, np.arange(100) * 10, [1] * 100)
    write(path, many, SENSOR, format="evt2")
    path.write_bytes(path.read_bytes()[:-1])
    assert main(["info", str(path)]) == 1
    assert "truncated" in capsys.readouterr().err
    with pytest.warns(UserWarning, match="truncated"):
        assert main(["info", "--partial", str(path)]) == 0
    out = capsys.readouterr().out
    assert "events       99\n" in out and "truncated    yes" in out


def test_info_with_a_given_sensor_size(tmp_path, capsys):
    path = tmp_path / "plain.csv"
    path.write_text("10,1,2,1\n20,3,4,0\n")
    assert main(["info", "--sensor-size", "8,6,2", str(path)]) == 0
    assert "sensor size  8 x 6 x 2 (argument)" in capsys.readouterr().out
    assert main(["info", "--sensor-size", "8x6x2", str(path)]) == 0  # as `eventsnn stream` takes it
    assert "sensor size  8 x 6 x 2 (argument)" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["info", "--sensor-size", "8x6", str(path)])
    assert "sensor size '8x6' is not WxHxP" in capsys.readouterr().err
    assert main(["info", str(path)]) == 0
    assert "sensor size  4 x 5 x 2 (inferred from max coordinates)" in capsys.readouterr().out
