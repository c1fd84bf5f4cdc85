"""Batch inference speed and memory: `eventsnn batch` against the obvious tonic + Python loop.

The job: read every recording, cut 300 ms windows (NDigits' sample length), encode each with
ToFrame (16 time bins, 34x34x2: the transforms of conf/ndigits.yaml), run the NDigits network of
conf/ndigits.yaml (random weights: speed does not depend on them), write per-window
probabilities to HDF5. Two workloads: many small recordings (N-MNIST-like, 300 ms, ~5k events)
and a few long ones (10M events at 100k events/s). `eventsnn batch` runs with 1 process and
with 2 (``--devices 2 --strategy ddp`` on CPU); the obvious way reads each file whole, slices it
with tonic's SliceByTime, encodes with tonic's ToFrame and calls the model once per window in a
Python loop. Events per second count the events processed over the job's time after Python
start-up (imports excluded, set-up included); wall time with start-up is shown too. Peak RSS is
measured with GNU time for 1 and 10 long recordings. Writes benchmarks/batch.md. Run it alone:

    flock /tmp/eventsnn-bench.lock .venv/bin/python benchmarks/batch.py
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).parents[1]
DATA = Path(os.environ.get("EVENTSNN_BENCH_DATA", "/tmp/eventsnn-bench-batch"))
SENSOR = (34, 34, 2)
WINDOW_US = 300_000
RATE_LONG = 100_000  # events per second in the long recordings


def random_events(n: int, duration_us: int, seed: int) -> np.ndarray:
    """n sorted uniform events on the 34x34x2 sensor over duration_us."""
    from eventsnn.events import make_events

    rng = np.random.default_rng(seed)
    t = np.sort(rng.integers(0, duration_us, n))
    return make_events(rng.integers(0, 34, n), rng.integers(0, 34, n), t, rng.integers(0, 2, n))


def make_folder(name: str, count: int, n_events: int, duration_us: int, suffix: str) -> Path:
    """A folder of `count` recordings (made once, kept between runs)."""
    from eventsnn.events import write

    folder = DATA / name
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        path = folder / f"rec{i:03d}{suffix}"
        if not path.exists():
            write(path, random_events(n_events, duration_us, seed=i), SENSOR)
    return folder


def make_checkpoint() -> Path:
    """The NDigits network and transforms of conf/ndigits.yaml, saved as the training CLI does."""
    from eventsnn.checkpoint import read_checkpoint, save, write_checkpoint
    from eventsnn.models import SpikingClassifier

    recipe = yaml.safe_load((ROOT / "conf" / "ndigits.yaml").read_text())
    model_args = recipe["model"]["init_args"]
    path = DATA / "ndigits.h5"
    model = SpikingClassifier(
        network=model_args["network"],
        input_shape=model_args["input_shape"],
        readout=model_args["readout"],
        optimizer=model_args["optimizer"],
    )
    save(model, path)
    checkpoint = read_checkpoint(path)
    checkpoint["datamodule_hyper_parameters"] = recipe["data"]["init_args"]
    write_checkpoint(path, checkpoint)
    return path


def timed(command: list[str], env: dict[str, str] | None = None) -> tuple[int, str]:
    """Run a command under GNU time: (peak RSS in MB, stdout)."""
    result = subprocess.run(
        ["/usr/bin/time", "-f", "RSS_KB=%M", *command],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
    )
    if result.returncode != 0:
        raise RuntimeError(f"{command} failed:\n{result.stderr[-3000:]}")
    rss = int(re.findall(r"RSS_KB=(\d+)", result.stderr)[-1]) // 1024
    return rss, result.stdout


def run_ours(checkpoint: Path, folder: Path, processes: int) -> dict[str, float]:
    """`eventsnn batch` over the folder: events, seconds after start-up, wall seconds, RSS."""
    import h5py

    output = DATA / f"out-{folder.name}-{processes}.h5"
    command = [sys.executable, "-m", "pipelines.cli", "batch", "--checkpoint", str(checkpoint)]
    command += ["--inputs", str(folder), "--output", str(output), "--overwrite"]
    command += ["--progress", "false", "--threads", "1", "--devices", str(processes)]
    command += ["--strategy", "ddp" if processes > 1 else "auto"]
    started = time.perf_counter()
    rss, _ = timed(command)
    wall = time.perf_counter() - started
    with h5py.File(output, "r") as file:
        seconds = float(file.attrs["seconds"])
        predict = float(file.attrs["predict_seconds"])
        events = sum(int(g.attrs["n_events"]) for g in file["recordings"].values())
        windows = sum(int(g.attrs["n_windows"]) for g in file["recordings"].values())
    return {
        "events": events,
        "windows": windows,
        "seconds": seconds,
        "predict": predict,
        "wall": wall,
        "rss": rss,
    }


def run_obvious(checkpoint: Path, folder: Path) -> dict[str, float]:
    """The obvious way in a subprocess (this file with --obvious)."""
    output = DATA / f"out-{folder.name}-obvious.h5"
    command = [sys.executable, __file__, "--obvious", str(checkpoint), str(folder), str(output)]
    started = time.perf_counter()
    rss, stdout = timed(command, env={"OMP_NUM_THREADS": "1"})
    wall = time.perf_counter() - started
    return {**json.loads(stdout.strip().splitlines()[-1]), "wall": wall, "rss": rss}


def obvious(checkpoint: str, folder: str, output: str) -> None:
    """tonic + a Python loop over files and windows; prints events, windows and seconds (JSON)."""
    import h5py
    import tonic
    import torch

    from eventsnn.checkpoint import load_model
    from eventsnn.events import read

    started = time.perf_counter()
    torch.set_num_threads(1)
    model = load_model(checkpoint)
    to_frame = tonic.transforms.ToFrame(sensor_size=SENSOR, n_time_bins=16)
    slicer = tonic.slicers.SliceByTime(time_window=WINDOW_US, include_incomplete=True)
    events_done = windows_done = 0
    with h5py.File(output, "w") as file:
        for path in sorted(Path(folder).iterdir()):
            if path.suffix not in (".npy", ".h5"):
                continue
            events = read(path).events
            probabilities = []
            for window in slicer.slice(events, None)[0]:
                if len(window) == 0:
                    continue
                frames = torch.from_numpy(to_frame(window)).float()[:, None]
                with torch.no_grad():
                    probabilities.append(model.logits(frames).softmax(-1)[0].numpy())
            file.create_dataset(path.name, data=np.array(probabilities))
            events_done += len(events)
            windows_done += len(probabilities)
    seconds = time.perf_counter() - started
    print(json.dumps({"events": events_done, "windows": windows_done, "seconds": seconds}))


def row(name: str, how: str, result: dict[str, float], baseline: dict[str, float] | None) -> str:
    """A table row; the speed-up is over the obvious way's events per second after start-up."""
    rate = result["events"] / result["seconds"]
    base_rate = rate if baseline is None else baseline["events"] / baseline["seconds"]
    predict = result.get("predict")
    processing = "" if predict is None else f"{result['events'] / predict / 1e6:.2f}"
    return (
        f"| {name} | {how} | {result['events']:,} | {result['windows']:,} | "
        f"{result['seconds']:.1f} | {result['wall']:.1f} | {rate / 1e6:.2f} | {processing} | "
        f"{rate / base_rate:.1f}x | {result['rss']} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--obvious", nargs=3, metavar=("CHECKPOINT", "FOLDER", "OUTPUT"))
    parser.add_argument("--small", type=int, default=100, help="number of small recordings")
    parser.add_argument("--long-events", type=int, default=10_000_000)
    parser.add_argument("--long", type=int, default=3, help="number of long recordings")
    parser.add_argument("--rss-long", type=int, default=10, help="long recordings for peak RSS")
    args = parser.parse_args()
    if args.obvious:
        obvious(*args.obvious)
        return
    checkpoint = make_checkpoint()
    long_us = args.long_events * 1_000_000 // RATE_LONG
    small = make_folder(f"small-{args.small}", args.small, 5_000, WINDOW_US, ".npy")
    long = make_folder(
        f"long-{args.long}x{args.long_events}", args.long, args.long_events, long_us, ".h5"
    )
    rows = []
    for name, folder in (
        (f"{args.small} x 5k events (300 ms)", small),
        (f"{args.long} x {args.long_events / 1e6:g}M events", long),
    ):
        baseline = run_obvious(checkpoint, folder)
        rows.append(row(name, "tonic + Python loop, 1 process", baseline, None))
        for processes in (1, 2):
            result = run_ours(checkpoint, folder, processes)
            rows.append(row(name, f"eventsnn batch, {processes} process(es)", result, baseline))
        print("\n".join(rows), flush=True)
    rss_rows = []
    for count in (1, args.rss_long):
        folder = make_folder(
            f"rss-{count}x{args.long_events}", count, args.long_events, long_us, ".h5"
        )
        result = run_ours(checkpoint, folder, 1)
        rss_rows.append(
            f"| {count} x {args.long_events / 1e6:g}M events | {result['rss']} | "
            f"{result['events'] / result['seconds'] / 1e6:.2f} |"
        )
        print(rss_rows[-1], flush=True)
    load = os.getloadavg()
    machine = platform.processor() or platform.machine()
    text = f"""# Batch inference: `eventsnn batch` vs the obvious tonic + Python loop

Generated by `flock /tmp/eventsnn-bench.lock .venv/bin/python benchmarks/batch.py` on
{machine}, {os.cpu_count()} cores, Python {platform.python_version()}.
**Other work shared the machine** (load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} at
the end, on 2 cores): absolute figures are low and noisy; the ratios are what to read.

Job: read each recording, cut 300 ms windows, encode with ToFrame (16 bins, 34x34x2), run the
NDigits network of `conf/ndigits.yaml` (random weights), write per-window probabilities to HDF5.
Small recordings are .npy, long ones our .h5 (10M events at 100k events/s = 100 s each).
`eventsnn batch` uses `--threads 1` (one torch thread a process), batch size 32 windows; the
obvious way (`benchmarks/batch.py --obvious`) reads each file whole with `eventsnn.events.read`,
slices with tonic's `SliceByTime`, encodes with tonic's `ToFrame` and calls the model per
window, with one torch thread. *Seconds*: after Python start-up (imports excluded; model
loading, checksums, Lightning set-up and the final merge included); *wall*: the whole command
(for 2 processes this includes the second rank's start-up, ~10-20 s of imports here).
*M ev/s* is over *s* (seconds after start-up); *M ev/s predict* over the time from all ranks
ready to the merged file (`predict_seconds` in the results file), the steady-state rate;
*vs obvious* compares *M ev/s*.

| recordings | how | events | windows | s | wall s | M ev/s | M ev/s predict | vs obvious | RSS MB |
|---|---|---:|---:|---:|---:|---:|---:|---:|---:|
{chr(10).join(rows)}

Peak RSS of `eventsnn batch` (1 process) as the data grows: recordings are streamed in chunks
of one window, so memory stays flat.

| recordings | peak RSS MB | M events/s |
|---|---:|---:|
{chr(10).join(rss_rows)}
Reading the table: the issue's target (>= 5x the obvious way) is **not met** on this machine.
Both ways run the same network on the same windows, and that inference is the floor: about
1.5 ms a window batched 32 at a time against 2.9 ms one window at a time (one torch thread).
The obvious way loses on tonic's ToFrame (~20x slower than ours on 34x34, see
encoding.md) and on per-call overhead, which gives 2x on long recordings. On 100 small recordings
the job is a few hundred milliseconds either way and our per-recording bookkeeping (checksum,
one crash-safe part file per recording, the merge) costs about as much as the model. Two
processes raise the steady-state rate (*M ev/s predict*) but the second rank's start-up
(a new interpreter importing torch and Lightning) dominates jobs this short on 2 shared cores.
"""
    (ROOT / "benchmarks" / "batch.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
