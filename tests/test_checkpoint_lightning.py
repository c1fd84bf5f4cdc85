"""Lightning with HDF5 checkpoints: `.h5` names, exact resume (2 + 2 epochs == 4), bad files."""

import logging
import os
import warnings

import h5py
import numpy as np
import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from eventsnn.checkpoint import (
    CheckpointError,
    HDF5CheckpointIO,
    HDF5ModelCheckpoint,
    check_state_dict,
    load_model,
    read_checkpoint,
)
from eventsnn.checkpoint.plugin import class_path
from eventsnn.models import SpikingClassifier
from pipelines.ckpt import main as ckpt_main


class TinyClassifier(pl.LightningModule):
    """Dropout, shuffled data, Adam and a step LR schedule: everything resuming must restore."""

    def __init__(self, n_in: int = 6, n_hidden: int = 16, n_classes: int = 3, lr: float = 0.05):
        super().__init__()
        self.save_hyperparameters()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(n_in, n_hidden),
            torch.nn.ReLU(),
            torch.nn.Dropout(0.3),
            torch.nn.Linear(n_hidden, n_classes),
        )
        self.register_buffer("samples_seen", torch.zeros((), dtype=torch.int64))

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        self.samples_seen += len(x)
        return F.cross_entropy(self(x), y)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", F.cross_entropy(self(x), y))

    def configure_optimizers(self):
        optimizer = torch.optim.Adam(self.parameters(), lr=self.hparams.lr)
        return [optimizer], [torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.7)]

    def on_load_checkpoint(self, checkpoint):
        check_state_dict(self, checkpoint["state_dict"], self.trainer.ckpt_path)


def loaders():
    gen = torch.Generator().manual_seed(123)
    x = torch.randn(48, 6, generator=gen)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0.5).long()
    train = DataLoader(TensorDataset(x[:40], y[:40]), batch_size=8, shuffle=True)
    return train, DataLoader(TensorDataset(x[40:], y[40:]), batch_size=8)


def make_trainer(root, max_epochs, **checkpoint_args):
    return pl.Trainer(
        max_epochs=max_epochs,
        accelerator="cpu",
        deterministic=True,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=root,
        plugins=[HDF5CheckpointIO()],
        callbacks=[HDF5ModelCheckpoint(dirpath=root, save_last=True, **checkpoint_args)],
    )


def fit(root, max_epochs, ckpt_path=None, **checkpoint_args):
    pl.seed_everything(0, verbose=False)
    model = TinyClassifier()
    make_trainer(root, max_epochs, **checkpoint_args).fit(model, *loaders(), ckpt_path=ckpt_path)
    return model


@pytest.fixture(autouse=True)
def quiet_lightning():
    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
    logging.getLogger("lightning_fabric").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        yield


def assert_same_weights(a, b):
    for (key, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.equal(x, y), key


@pytest.mark.slow
def test_two_plus_two_epochs_equal_four(tmp_path):
    fit(tmp_path / "a", max_epochs=2)
    last = tmp_path / "a" / "last.h5"
    after_two = read_checkpoint(last)
    assert after_two["epoch"] == 1  # 0-based: the second epoch ended
    resumed = fit(tmp_path / "a", max_epochs=4, ckpt_path=last)
    straight = fit(tmp_path / "b", max_epochs=4)
    assert_same_weights(resumed, straight)
    assert int(resumed.samples_seen) == int(straight.samples_seen) == 4 * 40
    assert not torch.equal(resumed.net[0].weight, after_two["state_dict"]["net.0.weight"])


def test_model_checkpoint_writes_h5_files_and_removes_old_ones(tmp_path):
    fit(tmp_path, max_epochs=3, monitor="val_loss", save_top_k=1, filename="{epoch}")
    names = sorted(path.name for path in tmp_path.iterdir())
    assert len(names) == 2 and "last.h5" in names
    best = next(name for name in names if name != "last.h5")
    assert best.startswith("epoch=") and best.endswith(".h5")
    checkpoint = read_checkpoint(tmp_path / "last.h5")
    assert checkpoint["model_class"] == class_path(TinyClassifier)
    assert checkpoint["hyper_parameters"] == {"n_in": 6, "n_hidden": 16, "n_classes": 3, "lr": 0.05}
    assert set(checkpoint["rng_states"]) >= {"torch", "numpy", "python"}
    assert len(checkpoint["optimizer_states"]) == 1 and len(checkpoint["lr_schedulers"]) == 1
    assert checkpoint["lr_schedulers"][0]["last_epoch"] == 3


def test_trainer_save_checkpoint_round_trips_the_whole_dict(tmp_path):
    model = fit(tmp_path, max_epochs=1)
    trainer = model.trainer
    written = trainer._checkpoint_connector.dump_checkpoint()
    trainer.save_checkpoint(tmp_path / "manual.h5")
    back = read_checkpoint(tmp_path / "manual.h5")
    assert list(back) == list(written)
    assert back["loops"] == written["loops"]
    assert back["callbacks"].keys() == written["callbacks"].keys()
    optimizer = back["optimizer_states"][0]
    for index, state in optimizer["state"].items():
        for name, value in state.items():
            assert torch.equal(value, written["optimizer_states"][0]["state"][index][name])
    assert optimizer["param_groups"] == written["optimizer_states"][0]["param_groups"]


def corrupt_missing_tensor(path):
    with h5py.File(path, "a") as file:
        del file["checkpoint/state_dict/net.3.bias"]
        keys = '["net.0.weight", "net.0.bias", "net.3.weight", "samples_seen"]'
        file["checkpoint/state_dict"].attrs["@keys"] = keys


def corrupt_wrong_shape(path):
    with h5py.File(path, "a") as file:
        del file["checkpoint/state_dict/net.3.bias"]
        dataset = file.create_dataset(
            "checkpoint/state_dict/net.3.bias", data=np.zeros(5, np.float32)
        )
        dataset.attrs["@type"] = "tensor"
        dataset.attrs["@dtype"] = "float32"


def corrupt_truncate(path):
    with open(path, "r+b") as file:
        file.truncate(path.stat().st_size // 2)


def corrupt_not_hdf5(path):
    path.write_bytes(b"PK\x03\x04 a zip, say" * 50)


def corrupt_newer_version(path):
    with h5py.File(path, "a") as file:
        file.attrs["format_version"] = 99


@pytest.mark.parametrize(
    ("corrupt", "message"),
    [
        (corrupt_missing_tensor, "state_dict/net.3.bias is missing"),
        (corrupt_wrong_shape, r"state_dict/net.3.bias has shape \(5,\)"),
        (corrupt_truncate, "truncated or damaged"),
        (corrupt_not_hdf5, "not an HDF5 file"),
        (corrupt_newer_version, "format_version 99 is newer"),
    ],
)
def test_resuming_from_a_bad_file_raises_and_leaves_the_model_unchanged(tmp_path, corrupt, message):
    fit(tmp_path, max_epochs=1)
    path = tmp_path / "last.h5"
    corrupt(path)
    pl.seed_everything(1, verbose=False)
    model = TinyClassifier()
    before = {key: value.clone() for key, value in model.state_dict().items()}
    with pytest.raises(CheckpointError, match=message) as error:
        make_trainer(tmp_path / "resume", 2).fit(model, *loaders(), ckpt_path=path)
    assert str(path) in str(error.value)
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key


def lightning_ckpt(tmp_path):
    """A `.ckpt` written by Lightning's own TorchCheckpointIO (torch pickle)."""
    pl.seed_everything(0, verbose=False)
    model = TinyClassifier()
    trainer = pl.Trainer(
        max_epochs=2,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(model, *loaders())
    trainer.save_checkpoint(tmp_path / "x.ckpt")
    return tmp_path / "x.ckpt", model


def test_ckpt_convert_then_info_and_resume(tmp_path, capsys):
    source, model = lightning_ckpt(tmp_path)
    target = tmp_path / "x.h5"
    assert ckpt_main(["ckpt", "convert", str(source), str(target)]) == 0
    original = torch.load(source, weights_only=True)
    converted = read_checkpoint(target)
    assert list(converted) == list(original)
    for key, value in original["state_dict"].items():
        assert torch.equal(converted["state_dict"][key], value), key
    assert converted["loops"] == original["loops"]
    assert converted["lr_schedulers"] == original["lr_schedulers"]

    capsys.readouterr()
    assert ckpt_main(["ckpt", "info", str(target)]) == 0
    lines = {line[:12].rstrip(): line[13:] for line in capsys.readouterr().out.splitlines()}
    n_values = sum(value.numel() for value in model.state_dict().values())
    assert n_values == 6 * 16 + 16 + 16 * 3 + 3 + 1  # the +1: the samples_seen buffer
    assert lines["parameters"].startswith(f"{n_values:,} in 5 tensors")
    assert lines["epoch"] == "2" and lines["global step"] == "10"  # saved after fit ended
    assert lines["model class"] == "(not recorded)"
    assert lines["format"].startswith("version 1, written by eventsnn")

    pl.seed_everything(0, verbose=False)
    resumed = TinyClassifier()
    make_trainer(tmp_path / "resume", 3).fit(resumed, *loaders(), ckpt_path=target)
    assert int(resumed.samples_seen) == 3 * 40


def test_ckpt_convert_records_the_model_class_for_load_model(tmp_path):
    source, model = lightning_ckpt(tmp_path)
    target = tmp_path / "x.h5"
    args = [
        "ckpt",
        "convert",
        str(source),
        str(target),
        "--model-class",
        class_path(TinyClassifier),
    ]
    assert ckpt_main(args) == 0
    loaded = load_model(target, allowed_classes=[TinyClassifier])
    assert_same_weights(loaded, model)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda path: path.write_bytes(b"\x80\x04not really a pickle"), "not a checkpoint torch"),
        (lambda path: torch.save([1, 2], path), "holds a list, not a checkpoint dict"),
    ],
)
def test_ckpt_convert_refuses_what_it_cannot_read_safely(tmp_path, capsys, make, message):
    source = tmp_path / "bad.ckpt"
    make(source)
    assert ckpt_main(["ckpt", "convert", str(source), str(tmp_path / "out.h5")]) == 1
    error = capsys.readouterr().err
    assert str(source) in error and message in error
    assert not (tmp_path / "out.h5").exists()


def test_ckpt_convert_refuses_pickled_code(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    source = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "payload": ExplodingOnUnpickle()}, source)
    assert ckpt_main(["ckpt", "convert", str(source), str(tmp_path / "out.h5")]) == 1
    error = capsys.readouterr().err
    assert "not a checkpoint torch reads safely" in error and error.count("\n") == 1
    assert not (tmp_path / "exploded").exists()


class ExplodingOnUnpickle:
    """Unpickling this calls os.system: torch.load(weights_only=False) would run it."""

    def __reduce__(self):
        return (os.system, ("touch exploded",))


def test_ckpt_info_on_a_bad_file_is_one_error_line(tmp_path, capsys):
    path = tmp_path / "notes.h5"
    path.write_text("hello")
    assert ckpt_main(["ckpt", "info", str(path)]) == 1
    error = capsys.readouterr().err
    assert error.startswith(f"eventsnn ckpt: {path}: not an HDF5 file")
    assert error.count("\n") == 1


def time_first(batch):
    """Collate (T, C, H, W) samples into a time-first (T, B, C, H, W) batch."""
    return torch.stack([x for x, _ in batch], dim=1), torch.tensor([y for _, y in batch])


def fit_classifier(root, max_epochs, ckpt_path=None):
    pl.seed_everything(0, verbose=False)
    spec = [{"conv": {"out": 4, "kernel": 3}}, {"lif": {"beta": 0.9}}, {"maxpool": 2}, "flatten"]
    spec += [{"dropout": {"p": 0.2}}, {"linear": {"out": 3}}, {"lif": {"beta": 0.9}}]
    model = SpikingClassifier(spec, [2, 8, 8])
    gen = torch.Generator().manual_seed(5)
    x = (torch.rand(24, 6, 2, 8, 8, generator=gen) < 0.3).float()
    y = torch.randint(0, 3, (24,), generator=gen)
    train = DataLoader(TensorDataset(x[:16], y[:16]), 4, shuffle=True, collate_fn=time_first)
    val = DataLoader(TensorDataset(x[16:], y[16:]), 4, collate_fn=time_first)
    make_trainer(root, max_epochs).fit(model, train, val, ckpt_path=ckpt_path)
    return model


@pytest.mark.slow
def test_spiking_classifier_resumes_exactly_and_loads_for_inference(tmp_path):
    fit_classifier(tmp_path / "a", max_epochs=1)
    last = tmp_path / "a" / "last.h5"
    for_inference = load_model(last)
    resumed = fit_classifier(tmp_path / "a", max_epochs=2, ckpt_path=last)
    straight = fit_classifier(tmp_path / "b", max_epochs=2)
    assert_same_weights(resumed, straight)
    assert type(for_inference) is SpikingClassifier and not for_inference.training
