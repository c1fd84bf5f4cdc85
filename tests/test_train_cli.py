"""The training CLI: every recipe in conf/ runs one batch; recipe mistakes give one clear line."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml
from fixtures.datasets.layouts import write_dvsgesture, write_nmnist, write_shd

from pipelines.train import argument_error_line, main

CONF = Path(__file__).resolve().parents[1] / "conf"
FIXTURES = {"NMNIST": write_nmnist, "DVSGesture": write_dvsgesture, "SHD": write_shd}
TINY_OFFLINE = {"NDigits": "{samples_per_class: 5}", "Vowels": "{samples_per_class: 5}"}


def training_recipes() -> list[str]:
    """The recipes in conf/ that the training CLI reads (a model and a data section)."""
    recipes = {p.stem: yaml.safe_load(p.read_text()) for p in sorted(CONF.glob("*.yaml"))}
    return [name for name, recipe in recipes.items() if {"model", "data"} <= set(recipe or {})]


def dataset_of(recipe: str) -> str:
    """The dataset a recipe trains on."""
    return yaml.safe_load((CONF / f"{recipe}.yaml").read_text())["data"]["init_args"]["dataset"]


def fit_args(recipe: str, root: Path, *extra: str) -> list[str]:
    """``fit`` on a recipe with data and logs under ``root``, one batch, no workers."""
    args = ["fit", "--config", str(CONF / f"{recipe}.yaml"), "--data.root", str(root)]
    args += ["--trainer.logger.init_args.save_dir", str(root / "runs")]
    args += ["--trainer.default_root_dir", str(root / "runs")]
    args += ["--trainer.enable_progress_bar", "false", "--data.num_workers", "0"]
    if dataset_of(recipe) in TINY_OFFLINE:
        args += ["--data.dataset_options", TINY_OFFLINE[dataset_of(recipe)]]
    return args + list(extra)


def error_of(capsys: pytest.CaptureFixture, args: list[str]) -> str:
    """The stderr of a run that must fail with exit code 2 and exactly one error line."""
    assert main(args) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(lines) == 1, lines
    return lines[0]


@pytest.mark.parametrize("recipe", training_recipes())
def test_every_recipe_fits_one_batch(tmp_path: Path, capsys, recipe: str):
    dataset = dataset_of(recipe)
    if dataset in FIXTURES:
        FIXTURES[dataset](tmp_path)
    assert dataset in FIXTURES or dataset in TINY_OFFLINE, f"no test data for {recipe}"
    assert main(fit_args(recipe, tmp_path, "--trainer.fast_dev_run", "true")) == 0
    assert "test accuracy: " in capsys.readouterr().out


def test_print_config_prints_the_resolved_recipe(capsys):
    assert main(["fit", "--config", str(CONF / "ndigits.yaml"), "--print_config"]) == 0
    out = capsys.readouterr().out
    assert "class_path: eventsnn.models.SpikingClassifier" in out and "dataset: NDigits" in out


def test_misspelt_key_names_the_key(tmp_path: Path, capsys):
    recipe = (CONF / "ndigits.yaml").read_text().replace("readout:", "readot:")
    (tmp_path / "typo.yaml").write_text(recipe)
    line = error_of(capsys, ["fit", "--config", str(tmp_path / "typo.yaml")])
    assert "model.readot: no such key" in line


def test_unknown_dataset_names_the_key(tmp_path: Path, capsys):
    line = error_of(capsys, fit_args("ndigits", tmp_path, "--data.dataset", "NMIST"))
    assert "data.dataset: unknown dataset 'NMIST'" in line


def test_missing_dataset_without_download_names_the_key(tmp_path: Path, capsys):
    line = error_of(capsys, fit_args("nmnist", tmp_path))
    assert "data.download: NMNIST is not under" in line and "download: true" in line


def test_network_for_another_sensor_size_names_the_key(tmp_path: Path, capsys):
    args = fit_args("ndigits", tmp_path, "--model.input_shape", "[2, 32, 32]")
    line = error_of(capsys, args)
    assert "model.input_shape: [2, 32, 32] does not fit the data" in line
    assert "[2, 34, 34]" in line


def test_argument_error_line_keeps_the_informative_line():
    message = (
        'Parser key "data":\n  Does not validate against any of the Union subtypes\n'
        "  Subtypes: [<class 'X'>, <class 'NoneType'>]\n  Errors:\n"
        "    - Problem with given class_path 'eventsnn.data.EventDataModule':\n"
        "        Expected a <class 'int'>. Got value: many\n"
        "    - Expected a <class 'NoneType'>\n  Given value type: <class 'dict'>"
    )
    assert argument_error_line(message) == "data: Expected a <class 'int'>. Got value: many"


@pytest.mark.slow
def test_ndigits_recipe_learns_and_writes_checkpoints_and_curves(tmp_path: Path, capsys):
    args = fit_args("ndigits", tmp_path, "--trainer.max_epochs", "3")
    args[args.index("--data.dataset_options") + 1] = "{samples_per_class: 40}"
    assert main(args) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("test accuracy"))
    accuracy = float(line.split()[2].rstrip("%")) / 100
    assert accuracy > 0.6, line  # ten classes: chance is 0.1
    (run,) = (tmp_path / "runs" / "ndigits").iterdir()
    assert {"best.h5", "last.h5"} <= {p.name for p in (run / "checkpoints").iterdir()}
    assert (run / "learning_curves.png").stat().st_size > 0
    assert "val_acc" in (run / "metrics.csv").read_text().splitlines()[0]
    assert "best.h5" in line
    # `test` on the best HDF5 checkpoint (its hyper-parameters read without torch.load) agrees
    best = run / "checkpoints" / "best.h5"
    test_args = ["test", *args[1 : args.index("--trainer.max_epochs")], "--ckpt_path", str(best)]
    assert main(test_args) == 0
    table = capsys.readouterr().out.splitlines()
    tested = float(next(x for x in table if x.split()[:1] == ["test_acc"]).split()[1])
    assert tested == pytest.approx(accuracy, abs=1e-4)
    # `predict` on the same checkpoint writes what it computed: the test split, same accuracy
    out = tmp_path / "predictions.h5"
    predict_args = ["predict", *test_args[1:], "--predictions", str(out)]
    assert main(predict_args) == 0
    assert f"-> {out}" in capsys.readouterr().out
    with h5py.File(out) as stored:
        probabilities = stored["probabilities"][:]
        assert probabilities.shape[1] == 10
        np.testing.assert_allclose(probabilities.sum(1), 1.0, rtol=1e-5)
        assert (stored["predicted"][:] == probabilities.argmax(1)).all()
        assert len(stored["labels"]) == len(probabilities)
        assert stored.attrs["accuracy"] == pytest.approx(accuracy, abs=1e-4)
        assert stored.attrs["model"] == "eventsnn.models.classifier.SpikingClassifier"
