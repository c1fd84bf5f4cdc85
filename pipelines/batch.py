"""`eventsnn batch`: run a checkpoint over a folder of recordings into one HDF5 results file.

    eventsnn batch --checkpoint run/best.h5 \\
        --inputs 'recordings/**/*.{aedat4,raw,dat,es,h5,npy}' --output results.h5
    eventsnn batch --config conf/batch.yaml [--readers 1] [--devices 2 --strategy ddp_fork]

Recordings are streamed in windows (from the checkpoint's data config unless --window-us /
--window-events are given), encoded with the transforms the model was trained with (stored in
the checkpoint) and run through ``Trainer.predict``; each rank writes its recordings' parts and
rank 0 merges them (layout: `eventsnn.inference.results`). ``--readers N`` reads and encodes
recordings in N background threads (other cores) while the model runs, and decodes HDF5 chunks
on N + 1 threads. ``--devices N --strategy
ddp_fork`` runs N processes on one machine, forked from this one (no new interpreter to start);
``ddp`` starts each as a new interpreter, as a cluster's nodes need. A re-run skips
recordings finished before with the same checksum (in the output, or in the part files of a
killed run) if the job is the same (checkpoint, mode, window, transform: specs that differ only
in how they are written, such as defaults given or left out, are the same), failed ones too
unless ``--retry-failed`` (say, after what failed them was fixed); ``--overwrite`` starts
again. A recording that cannot be read is recorded with its error; the exit code is 1
when any recording failed, 2 on a setup error, or when the run could not commit or merge its
results (what was committed is kept: a re-run takes it up). SIGTERM (``kill``, a scheduler's
preemption, ``docker stop``) stops the run as Ctrl-C does, in this process or in a forked rank:
what was committed is merged into the output, marked incomplete, for a re-run to finish; the
exit code is then 143 (128 + SIGTERM, the shell's convention for a process it terminated), and
130 (128 + SIGINT) after Ctrl-C.
"""

from __future__ import annotations

import builtins
import glob
import os
import platform
import re
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from jsonargparse import ActionConfigFile, ArgumentParser
from jsonargparse.typing import NonNegativeFloat, NonNegativeInt, PositiveInt

from eventsnn.events.formats import SUFFIX_FORMAT

_BRACES = re.compile(r"\{([^{}]*)\}")
TERMINATED = 128 + signal.SIGTERM
"""Exit code after SIGTERM: what a shell reports for a process SIGTERM ended."""
INTERRUPTED = 128 + signal.SIGINT
"""Exit code after Ctrl-C (SIGINT), by the same convention."""


def build_parser() -> ArgumentParser:
    """The command's options; every option can also come from the YAML of ``--config``."""
    parser = ArgumentParser(
        prog="eventsnn batch",
        exit_on_error=False,
        description="Run a checkpoint over event recordings into one HDF5 results file "
        "(windows and transforms from the checkpoint; resumable; parallel through Lightning).",
    )
    parser.add_argument("--config", action=ActionConfigFile, help="YAML file of these options")
    parser.add_argument("--checkpoint", type=str, required=True, help="HDF5 checkpoint")
    parser.add_argument(
        "--inputs",
        nargs="+",
        type=str,
        required=True,
        help="recordings: files, folders (searched recursively) or globs with ** and {a,b}",
    )
    parser.add_argument("--output", type=str, required=True, help="HDF5 results file")
    parser.add_argument("--overwrite", action="store_true", help="start again, drop old results")
    parser.add_argument(
        "--retry-failed",
        action="store_true",
        help="redo the recordings that failed before, not only the new and changed ones",
    )
    parser.add_argument(
        "--encode-only", action="store_true", help="write the encoded tensors, no predictions"
    )
    parser.add_argument("--window-us", type=int | None, default=None, help="window length, us")
    parser.add_argument("--window-events", type=int | None, default=None, help="window, events")
    parser.add_argument("--overlap", type=int, default=0, help="window overlap, window's unit")
    parser.add_argument(
        "--transform",
        type=list[dict] | None,
        default=None,
        help="encoding transforms (class_path/init_args list) instead of the checkpoint's",
    )
    parser.add_argument("--batch-size", type=PositiveInt, default=32, help="windows per batch")
    parser.add_argument(
        "--num-workers", type=NonNegativeInt, default=0, help="data-loader workers a rank"
    )
    parser.add_argument(
        "--readers",
        type=NonNegativeInt,
        default=0,
        help="threads a process reading and encoding recordings ahead of the model (0: none); "
        "HDF5 chunks are then decoded on N + 1 threads",
    )
    parser.add_argument(
        "--split-mb",
        type=NonNegativeInt,
        default=16,
        help="with several processes, the recordings of this many MB or more left over when "
        "they are dealt out whole are split, a part a process (.h5, .npy; time windows without "
        "overlap), so that no process waits for another's long recording; 0: never",
    )
    parser.add_argument(
        "--commit-seconds",
        type=NonNegativeFloat,
        default=1.0,
        help="finished recordings are written to disk together at most this often (0: every "
        "batch); a kill loses at most this much finished work, which the next run redoes",
    )
    parser.add_argument("--accelerator", type=str, default="cpu")
    parser.add_argument("--devices", type=PositiveInt, default=1, help="processes (devices) a node")
    parser.add_argument("--num-nodes", "--num_nodes", type=PositiveInt, default=1, help="machines")
    parser.add_argument(
        "--strategy",
        type=str,
        default="auto",
        help="several processes: ddp_fork on one machine (forked from this process: they "
        "start in a fraction of a second), ddp across machines (each a new interpreter "
        "importing torch: seconds)",
    )
    parser.add_argument(
        "--threads",
        type=PositiveInt | None,
        default=None,
        help="torch threads a process for this run (default: torch's; 1 on a busy machine)",
    )
    parser.add_argument("--progress", type=bool, default=True, help="show a progress bar")
    return parser


def expand_braces(pattern: str) -> list[str]:
    """Shell-style ``{a,b}`` alternatives of a glob pattern, expanded (glob lacks them)."""
    match = _BRACES.search(pattern)
    if match is None:
        return [pattern]
    head, tail = pattern[: match.start()], pattern[match.end() :]
    return [p for choice in match.group(1).split(",") for p in expand_braces(head + choice + tail)]


def find_recordings(inputs: Iterable[str], output: str | None = None) -> list[str]:
    """Absolute paths of the recordings the inputs name, sorted, each once.

    A folder gives every file under it with an event-file suffix, a pattern its matches with
    one (not the .json sidecars beside .npy files), both but hidden ones (a name or a folder
    starting with ".", such as macOS's ._ files, as glob's ``**`` leaves out); a file named as
    it is is always taken, even with glob characters in its name (``rec[1].h5``). The results
    file `output` and its part files are no recordings: left out when a folder or a pattern
    finds them (an output kept beside its recordings), refused when named.
    """
    from eventsnn.data.errors import ConfigError

    ours = _results_files(output)
    found: set[str] = set()
    for item in inputs:
        if Path(item).is_dir():
            found.update(str(p) for p in Path(item).rglob("*") if _listed(p, Path(item)))
        elif (glob.has_magic(item) or _BRACES.search(item)) and not Path(item).is_file():
            for pattern in expand_braces(item):
                found.update(p for p in glob.glob(pattern, recursive=True) if _is_event_file(p))
        elif ours(item):
            raise ConfigError("inputs", f"{item} is the results file (--output) or in its parts")
        else:
            found.add(item)
    # a.npy and ./a.npy are one recording
    return sorted(path for path in {os.path.abspath(p) for p in found} if not ours(path))


def _results_files(output: str | None) -> Callable[[str], bool]:
    """A test of whether a path is the results file `output` or in its parts folder."""
    from eventsnn.inference import parts_dir

    if output is None:
        return lambda path: False
    results, parts = os.path.abspath(output), os.path.abspath(parts_dir(output))

    def is_ours(path: str) -> bool:
        path = os.path.abspath(path)
        return path in (results, parts) or path.startswith(parts + os.sep)

    return is_ours


def _is_event_file(path: str | Path) -> bool:
    return Path(path).is_file() and Path(path).suffix.lower() in SUFFIX_FORMAT


def _listed(path: Path, folder: Path) -> bool:
    """Whether a folder search takes `path`: an event file, not hidden below `folder`."""
    hidden = any(part.startswith(".") for part in path.relative_to(folder).parts)
    return not hidden and _is_event_file(path)


def launcher_rank() -> int:
    """This process's global rank when a launcher started it (0 for the first process)."""
    local = int(os.environ.get("LOCAL_RANK", 0))
    node = int(os.environ.get("NODE_RANK", os.environ.get("GROUP_RANK", 0)))
    return int(os.environ.get("RANK", node * int(os.environ.get("LOCAL_WORLD_SIZE", 1)) + local))


def forks_ranks(strategy: str) -> bool:
    """Whether the Lightning strategy named starts its ranks by forking this process."""
    from pytorch_lightning.strategies import StrategyRegistry

    if strategy not in StrategyRegistry:  # StrategyRegistry.get would build the strategy
        return False
    return StrategyRegistry[strategy]["init_params"].get("start_method") == "fork"


def rank_threads(threads: int | None) -> int | None:
    """torch threads each rank sets for itself: `threads` (--threads), else OMP_NUM_THREADS's;
    None leaves Lightning's choice (each process its share of the cores).
    """
    if threads is None and "OMP_NUM_THREADS" in os.environ:
        import torch

        return torch.get_num_threads()  # torch's reading of the variable
    return threads


def rank_setup(threads: int | None) -> list[Any]:
    """Callbacks that set torch's threads in each rank's own process (after Lightning's
    launcher set its share of the cores), when a number is asked for."""
    from pytorch_lightning.callbacks import LambdaCallback

    if threads is None:
        return []

    def set_threads(trainer: Any, pl_module: Any, stage: str) -> None:
        import torch

        torch.set_num_threads(threads)

    return [LambdaCallback(setup=set_threads)]


@contextmanager
def stop_on_sigterm() -> Iterator[None]:
    """SIGTERM stops the run as Ctrl-C does: it raises Lightning's ``SIGTERMException`` (exit code
    TERMINATED) in the main thread, which the results writer's ``on_exception`` handles; the
    previous handler is put back after. ``Trainer.predict`` keeps this handler: Lightning's own,
    installed for the run, calls it after logging the signal, and puts it back at the end."""
    if not _in_main_thread():  # only the main thread gets signals and may set their handlers
        yield
        return
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


def rank_sigterm() -> Any:
    """A callback that leaves SIGTERM to `stop_on_sigterm`'s handler alone in each rank of a
    multi-process run: Lightning's, called first, broadcasts from rank 0 inside the handler, and
    a rank that gets SIGTERM when the others do not (or more often) waits there for ever, the
    others at their next collective. Forked ranks inherit the handler; torch's launcher SIGTERMs
    the others when one exits. It takes over when prediction starts: Lightning installs its own
    a moment earlier, while it sets the run up, and a SIGTERM to one rank in that gap can still
    wait in its broadcast (under ddp_fork, until the launcher's grace period ends)."""
    from pytorch_lightning.callbacks import LambdaCallback

    def alone(trainer: Any, pl_module: Any) -> None:
        if trainer.world_size > 1 and _in_main_thread():
            signal.signal(signal.SIGTERM, _terminate)

    return LambdaCallback(on_predict_start=alone)


def _terminate(signum: int, frame: Any) -> None:
    """Stop the run (`stop_on_sigterm`); SIGTERMs while it stops are ignored."""
    from pytorch_lightning.utilities.exceptions import SIGTERMException

    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise SIGTERMException(TERMINATED)


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def pending_recordings(
    paths: Sequence[str], output: str, retry_failed: bool = False
) -> tuple[list[str], list[str]]:
    """(to do, already done): done means finished before with the same checksum, in the output
    or in part files a killed run left (a split recording once all its pieces are there); a
    recording that failed is done too, unless `retry_failed`."""
    from eventsnn.inference import completed, same_checksum

    done_before = completed(output, failed=not retry_failed)
    todo, done = [], []
    for path in paths:
        try:
            same = path in done_before and same_checksum(path, done_before[path])
        except OSError:
            same = False
        (done if same else todo).append(path)
    return todo, done


def run_metadata(args: Any, recipe: Any, paths: Sequence[str], started: float) -> dict[str, Any]:
    """What the results file records about this run."""
    import h5py
    import numpy
    import pytorch_lightning
    import torch

    from eventsnn.inference import file_digest
    from eventsnn.inference.dataset import window_time_steps

    try:
        from importlib.metadata import version

        eventsnn_version = version("eventsnn")
    except Exception:  # not installed as a distribution (a bare checkout)
        eventsnn_version = "unknown"
    pad_time_steps = None  # predictions take windows as they are
    if args.encode_only:  # one results table: every window as long in time as the longest
        pad_time_steps = window_time_steps(recipe.window, recipe.transforms)
    return {
        "checkpoint": os.path.abspath(args.checkpoint),
        "checkpoint_sha256": file_digest(args.checkpoint, "sha256"),
        "mode": "encode" if args.encode_only else "predict",
        "started": datetime.fromtimestamp(started, UTC).isoformat(),
        "started_unix": started,
        "versions": {
            "eventsnn": eventsnn_version,
            "python": platform.python_version(),
            "torch": torch.__version__,
            "pytorch_lightning": pytorch_lightning.__version__,
            "numpy": numpy.__version__,
            "h5py": h5py.__version__,
        },
        "parameters": {
            **recipe.window.as_dict(),
            "transform": recipe.transform_specs,
            "sensor_size": recipe.sensor_size,
            "pad_time_steps": pad_time_steps,  # encoded windows' T, zero-padded at the end
            "batch_size": args.batch_size,
            "devices": args.devices,
            "num_nodes": args.num_nodes,
            "strategy": args.strategy,
            "inputs": list(args.inputs),
            "recordings": len(paths),
        },
    }


def summary(
    output: str, todo: Sequence[str], done: Sequence[str], seconds: float
) -> tuple[str, int]:
    """The final table and the number of the run's recordings that failed, now or before (the
    output holds their errors), or have no result (pieces of a split recording that never all
    finished); windows, events and rate count this run's work (`todo`), not what was done."""
    from eventsnn.inference import iter_records

    keys = ("path", "status", "error", "n_events", "n_windows")
    wanted = {*todo, *done}
    records = {r["path"]: r for r in iter_records(output, keys) if r.get("path") in wanted}
    now = [records[path] for path in todo if path in records]
    failed = [(r["path"], r["error"]) for r in records.values() if r.get("status") == "failed"]
    failed += [(path, NO_RESULT) for path in todo if path not in records]
    events = sum(int(r.get("n_events", 0)) for r in now)
    rows = [
        ("recordings", len(wanted)),
        ("skipped (done before)", len(done)),
        ("processed now", len(todo)),
        ("failed", len(failed)),
        ("windows", sum(int(r.get("n_windows", 0)) for r in now)),
        ("events", events),
        ("seconds", f"{seconds:.2f}"),
        ("events/s (this run)", f"{events / seconds if seconds > 0 else 0.0:.3g}"),
    ]
    lines = [f"{name:<24}{value:>14}" for name, value in rows]
    lines += [f"FAILED {_naming(path, error)}" for path, error in failed]
    return "\n".join(lines), len(failed)


NO_RESULT = (
    "no result was written (the pieces it was split into did not all finish: did the file "
    "change during the run?); run again to redo it"
)


def _naming(path: str, error: str) -> str:
    """The error, prefixed with the path unless it already starts with it."""
    return error if error.startswith(path) else f"{path}: {error}"


LIGHTNING_LOGGERS = ("pytorch_lightning", "lightning_fabric")
"""Loggers of Lightning's start-up notes: GPU and TPU availability, a logger tip, ranks joining."""
IRRELEVANT_WARNINGS = (
    "Couldn't infer the batch indices",  # the writer takes windows from the batch, not indices
    r"`isinstance\(treespec, LeafSpec\)` is deprecated",  # inside Lightning, under newer torch
)
"""Warnings Lightning gives every batch run that ask nothing of the user."""


def quiet_lightning() -> None:
    """Leave the output to the progress bar, the summary and warnings that matter: Lightning's
    start-up notes (`LIGHTNING_LOGGERS` below WARNING) and `IRRELEVANT_WARNINGS` are dropped."""
    import logging
    import warnings

    for name in LIGHTNING_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    for message in IRRELEVANT_WARNINGS:
        warnings.filterwarnings("ignore", message=message)


def make_trainer(args: Any, callbacks: list[Any]) -> Any:
    """The Lightning trainer of the run, quiet (`quiet_lightning`); a setting it refuses (an
    unknown strategy, an accelerator that is not there) is a ConfigError naming it."""
    import pytorch_lightning as pl
    from lightning_fabric.utilities.exceptions import MisconfigurationException

    from eventsnn.data.errors import ConfigError

    quiet_lightning()
    try:
        return pl.Trainer(
            accelerator=args.accelerator,
            devices=args.devices,
            num_nodes=args.num_nodes,
            strategy=args.strategy,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            callbacks=callbacks,
        )
    except (ValueError, ImportError, MisconfigurationException) as error:
        options = f"--accelerator {args.accelerator}, --devices {args.devices}, --strategy"
        raise ConfigError(f"{options} {args.strategy}", str(error)) from None


def run(args: Any, threads: int | None = None) -> int:
    """Set up from the checkpoint, predict over the pending recordings, print the summary.

    Each rank runs with `threads` torch threads (None: Lightning's choice). With a forking
    strategy this process is no rank: it forks them, waits, and prints the summary.
    """
    from eventsnn.checkpoint import load_model
    from eventsnn.data.errors import ConfigError
    from eventsnn.events import decoding_threads
    from eventsnn.inference import (
        ResultsWriter,
        WindowConfig,
        WindowDataModule,
        WindowPredictor,
        canonical_spec,
        check_job,
        data_recipe,
        job_identity,
        merge,
        parts_dir,
        read_data_hparams,
    )

    started = time.time()
    rank = launcher_rank()
    if Path(args.output).is_dir():
        example = Path(args.output) / "results.h5"
        raise ConfigError("output", f"{args.output} is a folder: give a file's path, as {example}")
    paths = find_recordings(args.inputs, args.output)
    if not paths:
        print(f"eventsnn batch: error: no recordings match {args.inputs}", file=sys.stderr)
        return 2
    model = load_model(args.checkpoint)
    window = None
    if args.window_us is not None or args.window_events is not None:
        window = WindowConfig(args.window_us, args.window_events, args.overlap)
    input_shape = getattr(model, "input_shape", None)
    recipe = data_recipe(
        read_data_hparams(args.checkpoint), args.checkpoint, args.transform, window, input_shape
    )
    metadata = run_metadata(args, recipe, paths, started)
    metadata["job"] = job_identity(metadata)
    if not args.overwrite:  # (another rank may be removing the old output)
        check_job(args.output, metadata["job"], canonical_spec)
    # with --overwrite the old results are being removed (by rank 0): not read, all to do
    todo, done = (list(paths), [])
    if not args.overwrite:
        todo, done = pending_recordings(paths, args.output, args.retry_failed)
    # ranks started by an outside launcher (torchrun, SLURM) all go in, whatever each of them
    # found done: the plan is rank 0's, and one rank alone in `predict` would wait for ever
    if todo or int(os.environ.get("WORLD_SIZE", "1")) > 1:
        writer = ResultsWriter(args.output, metadata, args.progress, args.commit_seconds)
        trainer = make_trainer(args, [writer, *rank_setup(threads), rank_sigterm()])
        data = WindowDataModule(
            todo,
            num_workers=args.num_workers,
            split_bytes=args.split_mb << 20,
            window=recipe.window,
            transforms=recipe.transforms,
            sensor_size=recipe.sensor_size,
            batch_size=args.batch_size,
            input_shape=None if args.encode_only else input_shape,
            pad_time_steps=metadata["parameters"]["pad_time_steps"],
            readers=args.readers,
        )
        predictor = WindowPredictor(None if args.encode_only else model, args.encode_only)
        if args.overwrite and rank == 0:  # only now: a bad option must not cost the old results
            Path(args.output).unlink(missing_ok=True)
            shutil.rmtree(parts_dir(args.output), ignore_errors=True)
        with decoding_threads(1 + args.readers), stop_on_sigterm():
            try:
                trainer.predict(predictor, datamodule=data, return_predictions=False)
            except SystemExit:  # Lightning exits 1 after Ctrl-C, the code of a failed recording
                if writer.interrupted:
                    raise KeyboardInterrupt from None
                raise
        rank = trainer.global_rank
    elif parts_dir(args.output).exists() and rank == 0:  # a killed run's parts, all done
        timing = {"seconds": time.time() - started, "predict_seconds": 0.0}
        merge(args.output, {**metadata, **timing, "complete": True})
    if rank != 0:
        return 0
    table, failed = summary(args.output, todo, done, time.time() - started)
    print(table)
    return 1 if failed else 0


def main(argv: list[str]) -> int:
    """Entry point: ``argv[0]`` is ``"batch"``."""
    from pytorch_lightning.utilities.exceptions import SIGTERMException
    from torch.multiprocessing import ProcessExitedException, ProcessRaisedException

    from eventsnn.checkpoint import CheckpointError
    from eventsnn.data.errors import ConfigError
    from eventsnn.events import EventsError

    parser = build_parser()
    try:
        args = parser.parse_args(argv[1:])
    except Exception as error:  # jsonargparse raises ArgumentError or its own
        print(f"eventsnn batch: error: {error}", file=sys.stderr)
        return 2
    threads = rank_threads(args.threads)
    # GNU OpenMP deadlocks a forked child that uses a thread pool its parent started: before a
    # fork this process computes on one thread (no pool); the forked ranks set their own
    parent_threads = 1 if forks_ranks(args.strategy) else args.threads
    one_line = (ConfigError, CheckpointError, EventsError, OSError)  # reported without traceback
    try:
        with torch_threads(parent_threads):
            return run(args, threads)
    except one_line as error:
        print(f"eventsnn batch: error: {error}", file=sys.stderr)
        return 2
    except SIGTERMException:
        return _terminated(args.output)
    except KeyboardInterrupt:
        return _stopped(args.output, "interrupted (Ctrl-C)", INTERRUPTED)
    except ProcessRaisedException as error:  # a forked rank's error, with its traceback
        reported, code = _rank_error(str(error), one_line)
        print(f"eventsnn batch: error: {reported}", file=sys.stderr)
        return code
    except ProcessExitedException as error:  # a forked rank killed (say, out of memory)
        if error.exit_code in (TERMINATED, -signal.SIGTERM):  # a forked rank got SIGTERM
            return _terminated(args.output)
        print(f"eventsnn batch: error: {error}; what was committed is kept", file=sys.stderr)
        return 2


def _terminated(output: str) -> int:
    """Tell that SIGTERM stopped the run; its exit code."""
    return _stopped(output, "terminated (SIGTERM)", TERMINATED)


def _stopped(output: str, how: str, code: int) -> int:
    """Tell that a signal stopped the run (`how`) and what is kept; return the exit `code`."""
    print(
        f"eventsnn batch: {how}; {output} holds what was committed (marked incomplete): run "
        "again to finish",
        file=sys.stderr,
    )
    return code


def _rank_error(traceback: str, one_line: tuple[type, ...]) -> tuple[str, int]:
    """How the command reports a forked rank's `traceback` (as torch relays it), and its exit
    code: the error's own lines and 2 for one of the `one_line` errors (by name; OSError's
    builtin subclasses too), as when not forked, else the whole traceback and 1, as an uncaught
    error in this process would give."""
    lines = traceback.strip().splitlines()
    frames = [i for i, line in enumerate(lines) if line.startswith('  File "')]
    start = frames[-1] + 1 if frames else 0
    while start < len(lines) and lines[start][:1].isspace():  # the frame's source line
        start += 1
    error = "\n".join(lines[start:])
    name = error.split(":", 1)[0].rsplit(".", 1)[-1]
    builtin = getattr(builtins, name, None)
    if name in {kind.__name__ for kind in one_line} or (
        isinstance(builtin, type) and issubclass(builtin, one_line)
    ):
        return error, 2
    return "a process failed:\n" + "\n".join(lines), 1


@contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """torch's intra-op threads set to `threads` for the run (when given), then put back."""
    if threads is None:
        yield
        return
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
