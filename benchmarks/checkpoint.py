"""Checkpoint speed: eventsnn's HDF5 checkpoints against torch.save / torch.load, same state.

For a 10 M-parameter model (four linear layers), times saving and loading (1) its state dict and
(2) a full training checkpoint (state dict plus Adam's two moments per parameter, as Lightning
saves it). Ours is ``write_checkpoint`` (atomic: temporary file, fsync, rename, folder fsync) and
``read_checkpoint``; torch's is ``torch.save`` (also with an fsync, for a like-for-like
durability) and ``torch.load(weights_only=True)``. Medians over repeats, ratios ours / torch.
Writes benchmarks/checkpoint.md. Run it alone:

    flock /tmp/eventsnn-bench.lock .venv/bin/python benchmarks/checkpoint.py
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import h5py
import torch

from eventsnn.checkpoint import read_checkpoint, write_checkpoint

TARGET_RATIO = 1.5


def ten_million_parameter_model() -> torch.nn.Module:
    """Four linear layers: 2.0 M + 4.0 M + 2.0 M + 2.0 M weights (10.0 M parameters with biases)."""
    return torch.nn.Sequential(
        torch.nn.Linear(1000, 2000),
        torch.nn.Linear(2000, 2000),
        torch.nn.Linear(2000, 1000),
        torch.nn.Linear(1000, 2000),
    )


def training_checkpoint(model: torch.nn.Module) -> dict:
    """What Lightning saves: weights, Adam state after one step, progress and hyper-parameters."""
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model(torch.randn(4, 1000)).sum().backward()
    optimizer.step()
    return {
        "epoch": 3,
        "global_step": 1200,
        "pytorch-lightning_version": "2.6.0",
        "state_dict": model.state_dict(),
        "optimizer_states": [optimizer.state_dict()],
        "lr_schedulers": [],
        "hyper_parameters": {"layers": [1000, 2000, 2000, 1000, 2000], "lr": 1e-3},
    }


def median_seconds(function: Callable[[], object], repeats: int) -> float:
    """Median wall time of `repeats` calls after one warm-up call."""
    function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def torch_save_fsync(obj: dict, path: Path) -> None:
    """torch.save, then fsync: the durability our atomic write gives."""
    with open(path, "wb") as file:
        torch.save(obj, file)
        file.flush()
        os.fsync(file.fileno())


def measure(name: str, obj: dict, folder: Path, repeats: int) -> dict:
    """Save and load times of `obj`, ours and torch's, and the file sizes."""
    ours, theirs = folder / f"{name}.h5", folder / f"{name}.pt"
    row = {
        "name": name,
        "values": sum(t.numel() for t in _tensors(obj)),
        "ours_save": median_seconds(lambda: write_checkpoint(ours, obj), repeats),
        "torch_save": median_seconds(lambda: torch.save(obj, theirs), repeats),
        "torch_save_fsync": median_seconds(lambda: torch_save_fsync(obj, theirs), repeats),
        "ours_load": median_seconds(lambda: read_checkpoint(ours), repeats),
        "torch_load": median_seconds(lambda: torch.load(theirs, weights_only=True), repeats),
        "ours_bytes": ours.stat().st_size,
        "torch_bytes": theirs.stat().st_size,
    }
    back = read_checkpoint(ours)
    assert all(torch.equal(a, b) for a, b in zip(_tensors(obj), _tensors(back), strict=True))
    return row


def _tensors(obj: object) -> list[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, dict):
        return [t for value in obj.values() for t in _tensors(value)]
    if isinstance(obj, list | tuple):
        return [t for value in obj for t in _tensors(value)]
    return []


def markdown(rows: list[dict], repeats: int, folder: Path, shared: bool) -> str:
    """The results as a markdown table with the machine and the method."""
    lines = [
        "# Checkpoint speed: eventsnn HDF5 vs torch.save / torch.load",
        "",
        f"A 10 M-parameter model (4 linear layers), median of {repeats} runs after a warm-up,",
        f"files in `{folder}` (page cache warm). Ours: `write_checkpoint` (atomic: temporary",
        "file, fsync, rename, folder fsync) and `read_checkpoint`; torch: `torch.save`, also",
        "followed by an fsync, and `torch.load(weights_only=True)`. Ratio = ours / torch",
        f"(target <= {TARGET_RATIO}). Produced by `benchmarks/checkpoint.py`.",
        "",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"torch {torch.__version__}, h5py {h5py.__version__} (HDF5 {h5py.version.hdf5_version})."
        + (" Other work shared the machine during the run." if shared else ""),
        "",
        "| state | values | file MB (ours / torch) | save s: ours | torch | torch+fsync "
        "| ratio (vs torch+fsync) | load s: ours | torch | ratio |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['name']} | {r['values'] / 1e6:.1f} M "
            f"| {r['ours_bytes'] / 1e6:.1f} / {r['torch_bytes'] / 1e6:.1f} "
            f"| {r['ours_save']:.3f} | {r['torch_save']:.3f} | {r['torch_save_fsync']:.3f} "
            f"| {r['ours_save'] / r['torch_save']:.2f} "
            f"({r['ours_save'] / r['torch_save_fsync']:.2f}) "
            f"| {r['ours_load']:.3f} | {r['torch_load']:.3f} "
            f"| {r['ours_load'] / r['torch_load']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    """Run the benchmark and write benchmarks/checkpoint.md."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--dir", type=Path, default=None, help="where to write the files")
    parser.add_argument("--shared", action="store_true", help="note that others used the machine")
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("checkpoint.md"))
    args = parser.parse_args()
    torch.manual_seed(0)
    model = ten_million_parameter_model()
    states = {
        "state dict": {"state_dict": model.state_dict()},
        "training checkpoint (+ Adam)": training_checkpoint(model),
    }
    with tempfile.TemporaryDirectory(dir=args.dir) as folder:
        rows = [
            measure(f"ckpt{i}", obj, Path(folder), args.repeats) | {"name": name}
            for i, (name, obj) in enumerate(states.items())
        ]
        table = markdown(rows, args.repeats, Path(folder).parent, args.shared)
    args.out.write_text(table)
    print(table)


if __name__ == "__main__":
    main()
