"""`eventsnn batch` end to end on a folder of mixed formats with broken files, against the model.

Truth is computed independently: the whole recording read at once, windows cut with numpy,
encoded with tonic's ToFrame and run through the classifier directly.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest
import tonic
import torch

from eventsnn.checkpoint import load_model, read_checkpoint, save, write_checkpoint
from eventsnn.events import make_events, read, write
from eventsnn.events.formats import hdf5, hdf5_chunks
from eventsnn.inference import FORMAT_VERSION, iter_records, parts_dir, read_recording
from eventsnn.inference import writer as batch_writer
from eventsnn.inference.parts import RecordingPart, commit_parts
from eventsnn.models import SpikingClassifier
from pipelines import batch

SENSOR = (8, 8, 2)
WINDOW_US = 10_000
BINS = 4
SPEC = [
    {"conv": {"out": 4, "kernel": 3}},
    {"lif": {"beta": 0.9, "threshold": 0.5}},
    "flatten",
    {"linear": {"out": 3}},
    {"lif": {"beta": 0.9, "threshold": 0.5}},
]
GOOD = ["r0.npy", "r1.h5", "r2.aedat4", "r3.raw", "r4.es", "r5.dat"]


def make_checkpoint(path: Path, data_hparams: bool = True) -> Path:
    """A small classifier saved through eventsnn.checkpoint, with the training data config."""
    torch.manual_seed(0)
    model = SpikingClassifier(
        network=SPEC,
        input_shape=[SENSOR[2], SENSOR[1], SENSOR[0]],
        optimizer={"class_path": "torch.optim.Adam", "init_args": {"lr": 0.01}},
    )
    save(model, path)
    if data_hparams:
        checkpoint = read_checkpoint(path)
        checkpoint["datamodule_hyper_parameters"] = {
            "dataset": "NDigits",
            "dataset_options": {"duration_us": WINDOW_US},
            "transform": [
                {
                    "class_path": "eventsnn.encoding.transforms.ToFrame",
                    "init_args": {"sensor_size": list(SENSOR), "n_time_bins": BINS},
                }
            ],
        }
        write_checkpoint(path, checkpoint)
    return path


def random_events(seed: int, n: int, duration_us: int) -> np.ndarray:
    """n uniformly random events on the sensor over duration_us."""
    rng = np.random.default_rng(seed)
    t = np.sort(rng.integers(0, duration_us, n))
    return make_events(rng.integers(0, 8, n), rng.integers(0, 8, n), t, rng.integers(0, 2, n))


def write_recordings(folder: Path, n_events: int = 3000, duration_us: int = 45_000) -> Path:
    """One recording in each format plus a corrupt, an empty, an eventless and a 34x34 one."""
    folder.mkdir(parents=True, exist_ok=True)
    for seed, name in enumerate(GOOD):
        write(folder / name, random_events(seed, n_events, duration_us), SENSOR)
    (folder / "corrupt.npy").write_bytes(b"not an event file")
    (folder / "empty.h5").write_bytes(b"")
    write(folder / "zero.npy", random_events(0, 0, 1), SENSOR)  # valid, without events
    write(folder / "sub" / "wide.npy", make_events([20], [3], [5], [1]), (34, 34, 2))
    return folder


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("batch")
    return {
        "root": root,
        "checkpoint": make_checkpoint(root / "model.h5"),
        "folder": write_recordings(root / "recordings"),
    }


def run(setup: dict[str, Path], output: Path, *extra: str, inputs: str | None = None) -> int:
    argv = ["batch", "--checkpoint", str(setup["checkpoint"]), "--output", str(output)]
    argv += ["--inputs", inputs or str(setup["folder"]), "--progress", "false", "--threads", "1"]
    argv += extra
    return batch.main(argv)


def top_or_tie(scores: np.ndarray) -> np.ndarray:
    """The top class along the last axis, -1 where several classes share the top score."""
    tied = (scores == scores.max(axis=-1, keepdims=True)).sum(axis=-1) > 1
    return np.where(tied, -1, scores.argmax(axis=-1))


def expected_probabilities(path: Path, model: torch.nn.Module) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities and logits of every 10 ms window, by numpy, tonic and the model."""
    events = read(path).events
    t0, frames = events["t"][0], []
    to_frame = tonic.transforms.ToFrame(sensor_size=SENSOR, n_time_bins=BINS)
    for start in range(int(t0), int(events["t"][-1]) + 1, WINDOW_US):
        window = events[(events["t"] >= start) & (events["t"] < start + WINDOW_US)]
        if len(window):
            frames.append(to_frame(window))
    x = torch.from_numpy(np.stack(frames, axis=1)).float()
    with torch.no_grad():
        logits = model.logits(x)
    return logits.softmax(-1).numpy(), logits.numpy()


def recordings_of(output: Path) -> dict[str, dict]:
    """Every recording of a results file by path: its row, with its windows' columns."""
    with h5py.File(output, "r") as file:
        return {path: read_recording(file, path) for path in file["recordings/path"].asstr()[()]}


def check_tables(file: h5py.File) -> None:
    """The results layout's invariants: a recording's windows are its n_windows rows from
    first_window on, one after the other, and each window row names its recording's row."""
    counts = file["recordings/n_windows"][()]
    assert len(file["recordings/path"]) == len(set(file["recordings/path"][()]))
    np.testing.assert_array_equal(file["recordings/first_window"][()], np.cumsum(counts) - counts)
    recording = np.repeat(np.arange(len(counts)), counts)
    np.testing.assert_array_equal(file["windows/recording"][()], recording)
    assert all(len(column) == counts.sum() for column in file["windows"].values())


def test_mixed_folder_matches_the_model_and_records_failures(setup, capsys):
    output = setup["root"] / "mixed.h5"
    assert run(setup, output) == 1  # some recordings failed
    model = load_model(setup["checkpoint"])
    results = recordings_of(output)
    assert len(results) == len(GOOD) + 4
    for name in GOOD:
        record = results[str(setup["folder"] / name)]
        windows = record["windows"]
        probabilities, logits = expected_probabilities(setup["folder"] / name, model)
        np.testing.assert_allclose(windows["probabilities"], probabilities, atol=1e-5)
        np.testing.assert_array_equal(windows["predicted"], top_or_tie(probabilities))
        np.testing.assert_allclose(windows["spike_counts"], logits)  # count readout
        rates = windows["firing_rates"]
        np.testing.assert_allclose(rates[:, -1], logits.sum(-1) / (BINS * 3), rtol=1e-5)
        mean = probabilities.mean(0)
        np.testing.assert_allclose(record["mean_probabilities"], mean, rtol=1e-5)
        assert record["predicted"] == top_or_tie(mean)
        assert record["status"] == "done" and record["n_events"] == 3000
        assert record["size"] == (setup["folder"] / name).stat().st_size
        assert np.all(np.diff(windows["t_start"]) % WINDOW_US == 0)
    failed = {Path(p).name: r["error"] for p, r in results.items() if r["error"]}
    assert set(failed) == {"corrupt.npy", "empty.h5", "wide.npy", "zero.npy"}
    assert "no events" in failed["zero.npy"]
    assert "(34, 34, 2)" in failed["wide.npy"] and "(8, 8, 2)" in failed["wide.npy"]
    assert all(name in error for name, error in failed.items())
    assert all(np.isnan(r["mean_probabilities"]).all() for r in results.values() if r["error"])
    with h5py.File(output, "r") as file:
        check_tables(file)
        assert json.loads(file["windows/firing_rates"].attrs["layer_names"])[-1].endswith("lif")
        assert json.loads(file.attrs["parameters"])["window_us"] == WINDOW_US
        assert "torch" in json.loads(file.attrs["versions"])
    table = capsys.readouterr().out
    assert "failed" in table and "FAILED" in table and "corrupt.npy" in table


def test_resume_skips_done_and_redoes_changed_files(setup, capsys):
    folder = setup["root"] / "resume"
    shutil.copytree(setup["folder"], folder)
    output = setup["root"] / "resume.h5"
    inputs = f"{folder}/**/*.{{npy,h5,es}}"  # brace and recursive glob
    run(setup, output, inputs=inputs)
    capsys.readouterr()
    first = {r["path"]: r for r in iter_records(output)}
    assert len(first) == 7  # r0.npy r1.h5 r4.es corrupt.npy empty.h5 zero.npy sub/wide.npy
    before = output.read_bytes()
    run(setup, output, inputs=inputs)
    assert re.search(r"processed now\s+0\n", capsys.readouterr().out)
    assert output.read_bytes() == before  # nothing to do: the file is left as it was
    write(folder / "r4.es", random_events(99, 500, 20_000), SENSOR)
    run(setup, output, inputs=inputs)
    table = capsys.readouterr().out
    second = {r["path"]: r for r in iter_records(output)}
    changed = str(folder / "r4.es")
    assert re.search(r"processed now\s+1\n", table)  # the counts are this run's: r4.es alone
    assert re.search(r"^events\s+500$", table, re.MULTILINE)
    assert re.search(rf"^windows\s+{second[changed]['n_windows']}$", table, re.MULTILINE)
    assert re.search(r"^failed\s+4$", table, re.MULTILINE)  # the broken files, failed before
    assert (
        second[changed]["n_events"] == 500
        and second[changed]["checksum"] != first[changed]["checksum"]
    )
    assert {p: r["checksum"] for p, r in second.items() if p != changed} == {
        p: r["checksum"] for p, r in first.items() if p != changed
    }
    with h5py.File(output, "r") as file:
        assert len(json.loads(file.attrs["runs"])) == 2
    run(setup, output, "--retry-failed", inputs=inputs)  # the 4 broken files, and only them
    table = capsys.readouterr().out
    assert re.search(r"processed now\s+4\n", table) and re.search(r"^failed\s+4$", table, re.M)
    assert {r["path"]: r["checksum"] for r in iter_records(output)} == {
        p: r["checksum"] for p, r in second.items()
    }
    run(setup, output, "--overwrite", inputs=inputs)
    assert re.search(r"processed now\s+7\n", capsys.readouterr().out)
    with h5py.File(output, "r") as file:
        assert len(json.loads(file.attrs["runs"])) == 1


def test_a_resume_that_only_merges_a_killed_runs_parts_marks_the_output_complete(
    setup, tmp_path, monkeypatch, capsys
):
    """Killed after its last commit, before merging: the re-run finds every recording done
    and merges the parts, as a run that got to the end would (complete, with its timings)."""
    output = tmp_path / "out.h5"
    inputs = str(setup["folder"] / "r0.npy")
    with monkeypatch.context() as patch:
        patch.setattr(batch_writer.ResultsWriter, "_merge", lambda self, complete: None)
        run(setup, output, inputs=inputs)
    assert not output.exists() and parts_dir(output).exists()
    assert run(setup, output, inputs=inputs) == 0
    assert re.search(r"skipped \(done before\)\s+1\n", capsys.readouterr().out)
    assert not parts_dir(output).exists()
    with h5py.File(output, "r") as file:
        assert file.attrs["complete"] and file.attrs["predict_seconds"] == 0.0
        (only,) = json.loads(file.attrs["runs"])
        assert only["complete"] and only["seconds"] > 0
    assert [r["path"] for r in iter_records(output)] == [inputs]


def test_the_summary_fails_a_recording_with_no_result(setup, tmp_path):
    """A recording of the run with no row in the output (pieces of a split recording that never
    all finished) counts as failed, named with why; one done before is not redone or counted."""
    output = tmp_path / "out.h5"
    done = str(setup["folder"] / "r0.npy")
    run(setup, output, inputs=done)
    lost = str(setup["folder"] / "r1.h5")
    table, failed = batch.summary(str(output), [lost], [done], 2.0)
    assert failed == 1
    assert f"FAILED {lost}: {batch.NO_RESULT}" in table.splitlines()
    assert re.search(r"^recordings\s+2$", table, re.MULTILINE)
    assert re.search(r"^events\s+0$", table, re.MULTILINE)


def test_results_of_an_older_format_are_refused_clearly(setup, tmp_path, capsys):
    output = tmp_path / "old.h5"
    inputs = str(setup["folder"] / "r0.npy")
    with h5py.File(output, "w") as file:  # format 2: a group a recording
        file.attrs.update(format="eventsnn-batch-results", format_version=2)
        file.create_group("recordings/abc").attrs["path"] = inputs
    assert run(setup, output, inputs=inputs) == 2
    error = capsys.readouterr().err
    assert "old.h5" in error and f"format {FORMAT_VERSION}" in error and "--overwrite" in error
    assert run(setup, output, "--overwrite", inputs=inputs) == 0
    assert [r["path"] for r in iter_records(output)] == [inputs]


def test_resuming_with_another_model_mode_or_window_is_refused(setup, tmp_path, capsys):
    """Done recordings would be skipped and the file would mix two jobs' results."""
    output = tmp_path / "job.h5"
    inputs = str(setup["folder"] / "r0.npy")
    assert run(setup, output, inputs=inputs) == 0
    before = output.read_bytes()
    other = make_checkpoint(tmp_path / "other.h5")
    weights = read_checkpoint(other)  # the same seed: other weights, for sure
    weights["state_dict"]["net.0.weight"] += 1
    write_checkpoint(other, weights)
    argv = ["batch", "--checkpoint", str(other), "--inputs", inputs, "--output", str(output)]
    changes = {
        "checkpoint_sha256": lambda: batch.main([*argv, "--progress", "false"]),
        "mode": lambda: run(setup, output, "--encode-only", inputs=inputs),
        "window_us": lambda: run(setup, output, "--window-us", "5000", inputs=inputs),
    }
    for name, rerun in changes.items():
        capsys.readouterr()
        assert rerun() == 2, name
        error = capsys.readouterr().err
        assert f"job.h5 holds results of another job ({name} differ" in error, error
        assert "--overwrite" in error and output.read_bytes() == before
    assert run(setup, output, "--window-us", "5000", "--overwrite", inputs=inputs) == 0


def test_resuming_with_the_same_transform_written_otherwise_is_accepted(setup, tmp_path, capsys):
    """A --transform that differs from the checkpoint's only in how it is written, or an @job
    written before specs were recorded in full, is the same job; another transform is not."""
    output = tmp_path / "same.h5"
    inputs = str(setup["folder"] / "r0.npy")
    assert run(setup, output, inputs=inputs) == 0
    with h5py.File(output, "r") as file:
        (recorded,) = json.loads(file.attrs["parameters"])["transform"]
    assert recorded["class_path"] == "eventsnn.encoding.transforms.ToFrame"
    assert recorded["init_args"]["n_time_bins"] == BINS
    assert (recorded["init_args"]["include_incomplete"], recorded["init_args"]["dtype"]) == (
        False,
        "int16",
    )
    arguments = {"sensor_size": list(SENSOR), "n_time_bins": BINS}
    written = {
        "class_path": "eventsnn.encoding.transforms.ToFrame",
        "init_args": {**arguments, "include_incomplete": False, "dtype": "numpy.int16"},
    }
    skipped = re.compile(r"^skipped \(done before\) +1$", re.MULTILINE)
    capsys.readouterr()
    assert run(setup, output, "--transform", json.dumps([written]), inputs=inputs) == 0
    assert skipped.search(capsys.readouterr().out)
    with h5py.File(output, "a") as file:  # @job as written before: the checkpoint's specs
        job = json.loads(file.attrs["job"])
        job["transform"] = read_checkpoint(setup["checkpoint"])["datamodule_hyper_parameters"][
            "transform"
        ]
        file.attrs["job"] = json.dumps(job, sort_keys=True)
    assert run(setup, output, inputs=inputs) == 0
    assert skipped.search(capsys.readouterr().out)
    before = output.read_bytes()
    other = {**written, "init_args": {**arguments, "n_time_bins": BINS // 2}}
    assert run(setup, output, "--transform", json.dumps([other]), inputs=inputs) == 2
    error = capsys.readouterr().err
    assert "same.h5 holds results of another job (transform differ" in error, error
    assert output.read_bytes() == before


def test_parts_left_by_a_killed_run_of_another_job_are_refused(setup, tmp_path, capsys):
    """No output yet, only the parts of a killed run: their job is checked all the same."""
    output = tmp_path / "killed.h5"
    folder = parts_dir(output) / "rank-0"
    folder.mkdir(parents=True)
    part = RecordingPart(folder, "/data/a.npy", job=json.dumps({"mode": "encode"}))
    part.finish({"checksum": "xxh3_128:0", "error": ""}, [])
    commit_parts(folder, [part])
    assert run(setup, output, inputs=str(setup["folder"] / "r0.npy")) == 2
    error = capsys.readouterr().err
    assert "killed.h5.parts/rank-0/" in error and "another job (checkpoint_sha256, mode" in error
    for path in folder.iterdir():
        path.unlink()
    with h5py.File(folder / "old.h5", "w") as file:  # a part of format 2: a group a recording
        file.create_group("recordings/abc").attrs["path"] = "/data/a.npy"
    assert run(setup, output, inputs=str(setup["folder"] / "r0.npy")) == 2
    expected = f"old.h5 is not an eventsnn batch results file of format {FORMAT_VERSION}"
    assert expected in capsys.readouterr().err
    assert run(setup, output, "--overwrite", inputs=str(setup["folder"] / "r0.npy")) == 0


def test_encode_only_writes_tonic_frames(setup):
    output = setup["root"] / "encoded.h5"
    path = setup["folder"] / "r2.aedat4"
    assert run(setup, output, "--encode-only", inputs=str(path)) == 0
    events = read(path).events
    to_frame = tonic.transforms.ToFrame(sensor_size=SENSOR, n_time_bins=BINS)
    ((_, record),) = recordings_of(output).items()
    windows = record["windows"]
    assert "probabilities" not in windows and "mean_probabilities" not in record
    encoded = windows["encoded"]
    assert encoded.shape[1:] == (BINS, 2, 8, 8)
    for frames, start, stop in zip(encoded, windows["t_start"], windows["t_stop"], strict=True):
        window = events[(events["t"] >= start) & (events["t"] < stop)]
        np.testing.assert_array_equal(frames, to_frame(window))


@pytest.mark.parametrize("option", ["--num-workers", "--readers"])
def test_workers_and_reader_threads_share_the_recordings(setup, tmp_path, option):
    outputs = {count: tmp_path / f"w{count}.h5" for count in (0, 2)}
    for count, output in outputs.items():
        run(setup, output, option, str(count), "--batch-size", "4", inputs=f"{setup['folder']}/r*")
    one, two = recordings_of(outputs[0]), recordings_of(outputs[2])
    assert sorted(one) == sorted(two) and len(two) == len(GOOD)
    for path, record in one.items():  # rows of interleaved recordings kept apart
        other = two[path]
        np.testing.assert_allclose(
            record["windows"]["probabilities"], other["windows"]["probabilities"], atol=1e-6
        )
        np.testing.assert_array_equal(record["windows"]["t_start"], other["windows"]["t_start"])
        assert record["n_events"] == other["n_events"]


@pytest.mark.parametrize(("readers", "decoders"), [(0, 1), (2, 3)])
def test_reader_threads_decode_hdf5_chunks_on_one_more_thread(
    setup, tmp_path, monkeypatch, capsys, readers, decoders
):
    seen = []
    read_columns = hdf5.read_columns

    def counting(*args):
        seen.append(hdf5_chunks.get_decoding_threads())
        return read_columns(*args)

    monkeypatch.setattr(hdf5, "read_columns", counting)
    output = tmp_path / "o.h5"
    assert run(setup, output, "--readers", str(readers), inputs=f"{setup['folder']}/r1.h5") == 0
    assert seen and set(seen) == {decoders}
    assert hdf5_chunks.get_decoding_threads() == 1  # the setting ends with the run
    assert run(setup, output, "--readers", "-1") == 2
    assert 'key "readers"' in capsys.readouterr().err


def test_yaml_config_with_count_windows(setup, tmp_path):
    config = tmp_path / "batch.yaml"
    output = tmp_path / "count.h5"
    path = setup["folder"] / "r0.npy"
    config.write_text(
        f"checkpoint: {setup['checkpoint']}\ninputs: [{path}]\noutput: {output}\n"
        "window_events: 1000\noverlap: 500\nbatch_size: 2\nprogress: false\n"
    )
    assert batch.main(["batch", "--config", str(config)]) == 0
    ((_, record),) = recordings_of(output).items()
    np.testing.assert_array_equal(record["windows"]["first_event"], [0, 500, 1000, 1500, 2000])
    assert np.all(record["windows"]["n_events"] == 1000)


def test_checkpoint_without_transforms_is_a_clear_error(setup, tmp_path, capsys):
    checkpoint = make_checkpoint(tmp_path / "bare.h5", data_hparams=False)
    argv = ["batch", "--checkpoint", str(checkpoint), "--inputs", str(setup["folder"])]
    assert batch.main([*argv, "--output", str(tmp_path / "o.h5"), "--progress", "false"]) == 2
    error = capsys.readouterr().err
    assert "transform:" in error and "bare.h5" in error


def test_no_matching_inputs_is_a_clear_error(setup, tmp_path, capsys):
    assert run(setup, tmp_path / "o.h5", inputs=str(tmp_path / "*.aedat4")) == 2
    assert "no recordings match" in capsys.readouterr().err


@pytest.mark.parametrize(
    "bad",
    [
        ["--strategy", "no-such"],  # refused by Lightning's trainer
        ["--accelerator", "gpu"],  # none on this machine
        ["--overlap", str(WINDOW_US)],  # refused by the window config
        ["--transform", '[{"class_path": "eventsnn.encoding.transforms.ToFrame"}]'],
    ],
)
def test_overwrite_with_a_bad_setting_keeps_the_old_results(setup, tmp_path, capsys, bad):
    """--overwrite removes the old results only once the job is set up: a setting refused on
    the way (one line, exit 2) costs nothing."""
    output = tmp_path / "out.h5"
    inputs = str(setup["folder"] / "r0.npy")
    assert run(setup, output, inputs=inputs) == 0
    before = output.read_bytes()
    capsys.readouterr()
    window = ["--window-us", str(WINDOW_US)] if bad[0] == "--overlap" else []
    assert run(setup, output, "--overwrite", *window, *bad, inputs=inputs) == 2
    error = capsys.readouterr().err
    assert error.startswith("eventsnn batch: error: ") and error.count("\n") == 1
    assert "Traceback" not in error
    assert output.read_bytes() == before


@pytest.mark.parametrize(
    ("option", "value"),
    [("--devices", "0"), ("--num-nodes", "0"), ("--threads", "0"), ("--batch-size", "0"),
     ("--batch-size", "-1"), ("--num-workers", "-1")],
)  # fmt: skip
def test_counts_out_of_range_are_one_line_errors(setup, tmp_path, capsys, option, value):
    assert run(setup, tmp_path / "o.h5", option, value) == 2
    error = capsys.readouterr().err
    key = option.removeprefix("--").replace("-", "_")
    assert error.startswith("eventsnn batch: error: ") and f'key "{key}"' in error
    assert not (tmp_path / "o.h5").exists()


def test_an_output_that_is_a_folder_is_a_one_line_error(setup, tmp_path, capsys):
    for extra in ([], ["--overwrite"]):
        assert run(setup, tmp_path, *extra) == 2
        error = capsys.readouterr().err
        assert error == (
            f"eventsnn batch: error: output: {tmp_path} is a folder: give a file's path, as "
            f"{tmp_path / 'results.h5'}\n"
        )
    assert tmp_path.is_dir()


def test_an_output_among_the_recordings_is_not_taken_for_one(setup, tmp_path, monkeypatch, capsys):
    """Results kept in the folder of their recordings: neither the output nor the part files a
    killed run left there are recordings on the next run; naming them is an error."""
    folder = tmp_path / "recordings"
    shutil.copytree(setup["folder"], folder)
    output = folder / "results.h5"
    with monkeypatch.context() as patch:  # killed after its commits, before the merge
        patch.setattr(batch_writer.ResultsWriter, "_merge", lambda self, complete: None)
        run(setup, output, inputs=str(folder))
    assert any(parts_dir(output).rglob("*.h5"))
    run(setup, output, inputs=str(folder))
    run(setup, output, inputs=f"{folder}/**/*.h5")
    recordings = sorted(Path(path).name for path in batch.find_recordings([str(setup["folder"])]))
    assert sorted(Path(r["path"]).name for r in iter_records(output)) == recordings
    capsys.readouterr()
    assert run(setup, output, inputs=str(output)) == 2
    assert f"inputs: {output} is the results file (--output)" in capsys.readouterr().err


def test_lightnings_start_up_notes_and_irrelevant_warnings_are_left_out(setup, tmp_path):
    notes: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = notes.append
    logger = logging.getLogger("pytorch_lightning")
    logger.addHandler(handler)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert run(setup, tmp_path / "quiet.h5", inputs=str(setup["folder"] / "r0.npy")) == 0
    finally:
        logger.removeHandler(handler)
    assert [note.getMessage() for note in notes if note.levelno < logging.WARNING] == []
    said = [str(warning.message) for warning in caught]
    assert not any("batch indices" in text or "LeafSpec" in text for text in said), said


def test_repository_config_parses():
    config = Path(__file__).parents[1] / "conf" / "batch.yaml"
    args = batch.build_parser().parse_args(["--config", str(config)])
    assert args.checkpoint and args.inputs and args.output


def test_brace_expansion():
    assert batch.expand_braces("a/*.{x,y}/{1,2}") == ["a/*.x/1", "a/*.x/2", "a/*.y/1", "a/*.y/2"]


def test_a_recording_named_twice_is_processed_once(setup, tmp_path, monkeypatch):
    monkeypatch.chdir(setup["folder"])
    twice = f"{setup['folder'] / 'r0.npy'},r0.npy,./r0.npy"
    assert batch.find_recordings(twice.split(",")) == [str(setup["folder"] / "r0.npy")]
    argv = ["batch", "--checkpoint", str(setup["checkpoint"]), "--output", str(tmp_path / "o.h5")]
    argv += ["--inputs", *twice.split(","), "--progress", "false", "--threads", "1"]
    assert batch.main(argv) == 0
    assert list(recordings_of(tmp_path / "o.h5")) == [str(setup["folder"] / "r0.npy")]
    with h5py.File(tmp_path / "o.h5", "r") as file:  # named as the user names it
        assert read_recording(file, "r0.npy")["path"] == str(setup["folder"] / "r0.npy")


def test_files_named_with_glob_characters_are_taken_and_hidden_files_are_not_searched(tmp_path):
    """A file named as it is is taken even when its name reads as a pattern; a folder search
    leaves hidden files and folders out, as glob's ** does (macOS's ._ files are no events)."""
    folder = tmp_path / "odd"
    for name in ["rec[1].h5", "rec{a,b}.npy", "seen.npy", ".hidden.h5", "._seen.npy", ".git/x.h5"]:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(b"")
    named = [str(folder / "rec[1].h5"), str(folder / "rec{a,b}.npy")]
    assert batch.find_recordings(named) == sorted(named)
    wanted = [str(folder / name) for name in ["rec[1].h5", "rec{a,b}.npy", "seen.npy"]]
    assert batch.find_recordings([str(folder)]) == sorted(wanted)
    assert batch.find_recordings([f"{folder}/**/*"]) == sorted(wanted)


def test_forking_strategies_are_told_apart():
    assert batch.forks_ranks("ddp_fork") and batch.forks_ranks("ddp_notebook")
    assert not any(batch.forks_ranks(s) for s in ("ddp", "ddp_spawn", "auto", "no-such"))


@pytest.mark.parametrize(("strategy", "parent"), [("ddp_fork", 1), ("ddp", 3)])
def test_a_forking_parent_sets_up_on_one_thread(monkeypatch, strategy, parent):
    """GNU OpenMP deadlocks a forked rank that uses a pool its parent started: none is started."""
    seen = {}

    def fake_run(args, threads):
        seen.update(parent=torch.get_num_threads(), ranks=threads)
        return 0

    monkeypatch.setattr(batch, "run", fake_run)
    before = torch.get_num_threads()
    argv = ["batch", "--checkpoint", "m.h5", "--inputs", "r", "--output", "o.h5", "--threads", "3"]
    assert batch.main([*argv, "--devices", "2", "--strategy", strategy]) == 0
    assert seen == {"parent": parent, "ranks": 3}
    assert torch.get_num_threads() == before


STEP_US = 2_500
FULL_STEPS = 3  # frames of a window spanning WINDOW_US: (WINDOW_US - 1 - STEP_US) // STEP_US + 1


def to_frame_transform(**slicing: int) -> str:
    """--transform's JSON: ToFrame on SENSOR sliced as given (time_window=..., event_count=...)."""
    init_args = {"sensor_size": list(SENSOR), **slicing}
    return json.dumps(
        [{"class_path": "eventsnn.encoding.transforms.ToFrame", "init_args": init_args}]
    )


def write_uneven_windows(path: Path) -> Path:
    """A recording of three 10 ms windows of 22 events each: one spanning its length (3 frames of
    2.5 ms), one starting 4 ms late (2 frames) and a short last one (3 ms: 1 frame)."""
    rng = np.random.default_rng(7)
    spans = [(1_000, 10_999), (15_000, 20_999), (21_000, 24_000)]
    t = np.sort(np.concatenate([[lo, hi, *rng.integers(lo, hi, 20)] for lo, hi in spans]))
    xy = rng.integers(0, 8, (2, len(t)))
    write(path, make_events(xy[0], xy[1], t, rng.integers(0, 2, len(t))), SENSOR)
    return path


def tonic_time_frames(path: Path) -> list[np.ndarray]:
    """tonic's 2.5 ms frames of each non-empty 10 ms window from the first event (numpy cuts)."""
    events = read(path).events
    to_frame = tonic.transforms.ToFrame(sensor_size=SENSOR, time_window=STEP_US)
    starts = range(int(events["t"][0]), int(events["t"][-1]) + 1, WINDOW_US)
    windows = (events[(events["t"] >= s) & (events["t"] < s + WINDOW_US)] for s in starts)
    return [to_frame(window) for window in windows if len(window)]


def test_encode_only_pads_time_windows_to_a_full_windows_steps(setup, tmp_path):
    """ToFrame(time_window=...) bins a window from its first event to its last: windows that
    start late or end the recording early have fewer frames, zero-padded at the end to a full
    window's, as training's collate pads shorter samples; all are stored, the T recorded."""
    folder = tmp_path / "recordings"
    folder.mkdir()
    paths = [write_uneven_windows(folder / "uneven.npy"), folder / "r0.npy"]
    shutil.copy(setup["folder"] / "r0.npy", paths[1])
    output = tmp_path / "padded.h5"
    transform = to_frame_transform(time_window=STEP_US)
    assert run(setup, output, "--encode-only", "--transform", transform, inputs=str(folder)) == 0
    results = recordings_of(output)
    lengths = set()
    for path in paths:
        frames = tonic_time_frames(path)
        lengths.update(len(f) for f in frames)
        padded = [np.pad(f, [(0, FULL_STEPS - len(f)), (0, 0), (0, 0), (0, 0)]) for f in frames]
        record = results[str(path)]
        assert record["status"] == "done", record["error"]
        np.testing.assert_array_equal(record["windows"]["encoded"], np.stack(padded))
    assert lengths == {1, 2, FULL_STEPS}  # windows of every length were padded, or not
    with h5py.File(output, "r") as file:
        assert json.loads(file.attrs["parameters"])["pad_time_steps"] == FULL_STEPS


def test_predictions_take_time_windows_unpadded(setup, tmp_path):
    """The model takes any T: each window runs with its own frames, as a plain tonic loop."""
    path = write_uneven_windows(tmp_path / "uneven.npy")
    output = tmp_path / "predicted.h5"
    transform = to_frame_transform(time_window=STEP_US)
    assert run(setup, output, "--transform", transform, inputs=str(path)) == 0
    model = load_model(setup["checkpoint"])
    windows = recordings_of(output)[str(path)]["windows"]
    frames = tonic_time_frames(path)
    assert [len(f) for f in frames] == [FULL_STEPS, 2, 1]
    assert len(windows["probabilities"]) == len(frames)
    for i, window in enumerate(frames):
        with torch.no_grad():
            (logits,) = model.logits(torch.from_numpy(window[:, None]).float()).numpy()
        np.testing.assert_allclose(windows["probabilities"][i], softmax(logits), atol=1e-5)
        rate = logits.sum() / (len(window) * 3)  # the count readout's spikes a step and neuron
        np.testing.assert_allclose(windows["firing_rates"][i, -1], rate, rtol=1e-5)
    with h5py.File(output, "r") as file:
        assert json.loads(file.attrs["parameters"])["pad_time_steps"] is None


def softmax(logits: np.ndarray) -> np.ndarray:
    exp = np.exp(logits - logits.max())
    return exp / exp.sum()


def test_windows_of_other_time_steps_are_refused_naming_T(setup, tmp_path):
    """A T that the window's length does not set cannot be padded to: the recording is refused,
    told that T differs and to fix the number of steps, not the sensor size."""
    path = write_uneven_windows(tmp_path / "uneven.npy")
    options = ["--transform", to_frame_transform(event_count=5)]  # T by the count: 1 for the probe
    assert run(setup, tmp_path / "o.h5", "--encode-only", *options, inputs=str(path)) == 1
    (record,) = recordings_of(tmp_path / "o.h5").values()
    assert record["status"] == "failed" and "uneven.npy" in record["error"]
    assert "time steps (T)" in record["error"]
    assert "n_time_bins" in record["error"] and "sensor size" not in record["error"]


def test_encoding_count_windows_to_steps_set_by_their_span_is_refused_at_set_up(
    setup, tmp_path, capsys
):
    """Count windows span any time, so a T set by the span (ToFrame's time_window) has no
    longest to pad to: refused before any recording, not in an order-dependent way (the
    first recording's T was the run's, and each process had its own)."""
    path = write_uneven_windows(tmp_path / "uneven.npy")
    by_span = to_frame_transform(time_window=STEP_US)
    options = ["--encode-only", "--window-events", "22", "--transform", by_span]
    assert run(setup, tmp_path / "o.h5", *options, inputs=str(path)) == 2
    error = capsys.readouterr().err
    assert "transform: windows of 22 events encode to 1 time steps (T) over 2100 us" in error
    assert "n_time_bins" in error and not (tmp_path / "o.h5").exists()
    options[-1] = to_frame_transform(n_time_bins=3)  # fixed steps: encoded as they are
    assert run(setup, tmp_path / "o.h5", *options, inputs=str(path)) == 0
    (record,) = recordings_of(tmp_path / "o.h5").values()
    assert record["windows"]["encoded"].shape[1] == 3


def test_a_shape_mismatch_names_the_axis_that_differs(tmp_path):
    """Encoded rows (n, T, P, H, W): T differing asks for fixed steps, H or W a fixed sensor."""
    writer = batch_writer.ResultsWriter(tmp_path / "o.h5", {})
    assert writer._mismatch({"encoded": np.zeros((2, 4, 2, 8, 8), np.float32)}) == ""
    steps = writer._mismatch({"encoded": np.zeros((1, 3, 2, 8, 8), np.float32)})
    assert "[3, 2, 8, 8], the run's float32 [4, 2, 8, 8]" in steps
    assert "time steps (T) differs" in steps and "n_time_bins" in steps
    assert "sensor size" not in steps
    sensor = writer._mismatch({"encoded": np.zeros((1, 3, 2, 9, 8), np.float32)})
    assert "fixed sensor size" in sensor and "n_time_bins" not in sensor
