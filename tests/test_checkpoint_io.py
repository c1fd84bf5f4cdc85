"""Checkpoint files: header, atomic writes (even under SIGKILL), and bad files named in errors."""

import os
import random
import signal
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

import eventsnn
from eventsnn.checkpoint import FORMAT_VERSION, CheckpointError, read_checkpoint, write_checkpoint


def sample_checkpoint(i: int = 0) -> dict:
    return {"epoch": i, "state_dict": {"w": torch.full((3, 4), float(i))}, "tag": f"save {i}"}


def test_header_and_tree(tmp_path):
    path = tmp_path / "run" / "last.h5"  # the folder is created
    write_checkpoint(path, sample_checkpoint(2) | {"model_class": "eventsnn.X"})
    with h5py.File(path, "r") as file:
        assert file.attrs["format"] == "eventsnn-checkpoint"
        assert file.attrs["format_version"] == FORMAT_VERSION
        assert file.attrs["eventsnn_version"] == eventsnn.__version__
        assert file.attrs["model_class"] == "eventsnn.X"
        assert file["checkpoint/state_dict/w"].shape == (3, 4)
        assert file["checkpoint"].attrs["epoch"] == 2
    back = read_checkpoint(path)
    assert back["epoch"] == 2 and back["tag"] == "save 2"
    assert torch.equal(back["state_dict"]["w"], torch.full((3, 4), 2.0))


def test_no_temporary_file_is_left_and_permissions_follow_umask(tmp_path):
    path = tmp_path / "x.h5"
    write_checkpoint(path, sample_checkpoint())
    write_checkpoint(path, sample_checkpoint(1))
    assert os.listdir(tmp_path) == ["x.h5"]
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_a_failed_save_keeps_the_previous_checkpoint(tmp_path):
    path = tmp_path / "x.h5"
    write_checkpoint(path, sample_checkpoint(1))
    with pytest.raises(CheckpointError, match="/checkpoint/state_dict/bad"):
        write_checkpoint(path, {"state_dict": {"w": torch.zeros(1), "bad": object()}})
    assert read_checkpoint(path)["epoch"] == 1
    assert os.listdir(tmp_path) == ["x.h5"]


def test_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.h5"):
        read_checkpoint(tmp_path / "nothing.h5")


def test_not_hdf5_names_the_path(tmp_path):
    path = tmp_path / "notes.h5"
    path.write_text("this is not HDF5\n" * 100)
    with pytest.raises(CheckpointError, match=f"{path}: not an HDF5 file"):
        read_checkpoint(path)


def test_a_torch_checkpoint_is_pointed_to_convert(tmp_path):
    path = tmp_path / "last.ckpt"
    torch.save({"state_dict": {}}, path)
    with pytest.raises(CheckpointError, match=f"{path}: not an HDF5 file but a torch.save zip"):
        read_checkpoint(path)


def test_plain_hdf5_file_is_not_a_checkpoint(tmp_path):
    path = tmp_path / "data.h5"
    with h5py.File(path, "w") as file:
        file["x"] = [1, 2, 3]
    with pytest.raises(CheckpointError, match=f"{path}: not an eventsnn checkpoint"):
        read_checkpoint(path)


@pytest.mark.parametrize("keep", [0.999, 0.5, 0.1, 0.01])
def test_truncated_file_names_the_path(tmp_path, keep):
    path = tmp_path / "cut.h5"
    write_checkpoint(path, {"state_dict": {"w": torch.randn(10_000)}})
    size = path.stat().st_size
    with open(path, "r+b") as file:
        file.truncate(int(size * keep))
    with pytest.raises(CheckpointError, match=f"{path}: truncated or damaged"):
        read_checkpoint(path)


def test_newer_format_version_names_path_and_versions(tmp_path):
    path = tmp_path / "future.h5"
    write_checkpoint(path, sample_checkpoint())
    with h5py.File(path, "a") as file:
        file.attrs["format_version"] = FORMAT_VERSION + 1
    with pytest.raises(
        CheckpointError, match=f"{path}: format_version {FORMAT_VERSION + 1} is newer"
    ):
        read_checkpoint(path)


def test_missing_format_version_is_named(tmp_path):
    path = tmp_path / "old.h5"
    write_checkpoint(path, sample_checkpoint())
    with h5py.File(path, "a") as file:
        del file.attrs["format_version"]
    with pytest.raises(
        CheckpointError, match=f"{path}: root attribute 'format_version' is missing"
    ):
        read_checkpoint(path)


def test_damaged_tree_names_path_and_key(tmp_path):
    path = tmp_path / "damaged.h5"
    write_checkpoint(path, sample_checkpoint())
    with h5py.File(path, "a") as file:
        del file["checkpoint/state_dict/w"]
    with pytest.raises(CheckpointError, match=f"{path}: /checkpoint/state_dict/w: missing"):
        read_checkpoint(path)


def save_forever(path, ready_fd: int) -> None:
    """Child process: save numbered checkpoints in a loop; numpy payload (no torch threads)."""
    for i in range(10**6):
        payload = np.full(2_000_000, float(i))
        write_checkpoint(path, {"i": i, "payload": payload, "end": i})
        if i == 0:
            os.write(ready_fd, b"ready")


def test_sigkill_during_repeated_saves_leaves_a_whole_checkpoint(tmp_path):
    """Kill a process that saves in a loop at random moments: the file is always one whole save.

    The saver is a forked child (a new interpreter would spend seconds importing Lightning).
    """
    path = tmp_path / "last.h5"
    rng = random.Random(0)
    leftovers = 0
    for kill in range(40):  # at least 5 kills, and on until one lands inside a save
        if kill >= 5 and leftovers:
            break
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child never returns into pytest
            try:
                save_forever(path, write_end)
            finally:
                os._exit(0)
        os.close(write_end)
        assert os.read(read_end, 5) == b"ready"
        os.close(read_end)
        time.sleep(rng.uniform(0.0, 0.4))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        checkpoint = read_checkpoint(path)
        i = checkpoint["i"]
        assert checkpoint["end"] == i
        np.testing.assert_array_equal(checkpoint["payload"], np.full(2_000_000, float(i)))
        temporaries = [name for name in os.listdir(tmp_path) if name.endswith(".tmp")]
        leftovers += len(temporaries)
        for name in temporaries:  # what a killed save leaves: never the checkpoint itself
            os.unlink(tmp_path / name)
    assert leftovers >= 1, "no kill landed during a save: the test did not exercise the crash"


def test_reading_only_some_top_level_keys(tmp_path):
    path = tmp_path / "x.h5"
    write_checkpoint(path, sample_checkpoint(4) | {"hyper_parameters": {"lr": 0.1, "dims": (3, 4)}})
    part = read_checkpoint(path, keys=["hyper_parameters", "epoch", "absent"])
    assert part == {"epoch": 4, "hyper_parameters": {"lr": 0.1, "dims": (3, 4)}}
    assert list(part) == ["epoch", "hyper_parameters"]  # the file's order


def test_a_missing_checkpoint_is_one_error_line_in_the_commands(tmp_path, capsys):
    from pipelines import stream, train

    missing = str(tmp_path / "missing.h5")
    config = str(Path(__file__).resolve().parents[1] / "conf" / "ndigits.yaml")
    argv = ["test", "--config", config, "--ckpt_path", missing, "--data.root", str(tmp_path)]
    argv += ["--trainer.logger.init_args.save_dir", str(tmp_path)]
    assert train.main(argv) == 2
    assert stream.main(["stream", "--checkpoint", missing, "--source", missing]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert errors == [
        f"eventsnn test: error: ckpt_path: {missing}: no checkpoint file there",
        f"eventsnn stream: error: {missing}: no checkpoint file there",
    ]
    assert not (tmp_path / "NDigits").exists()  # refused before the data was prepared
