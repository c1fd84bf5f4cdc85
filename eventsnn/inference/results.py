"""The batch results file: its layout, reading it back, part files and checksums.

Final file (one per run, replaced atomically by the merge), two tables of equal-length columns::

    /                 @format, @format_version, run metadata (@checkpoint, @versions,
                      @parameters, @seconds since start-up, @predict_seconds since all ranks
                      were ready... JSON where not scalar), @runs (JSON list)
    /recordings/      one row a recording:
        path checksum status ("done" | "failed") error      UTF-8 strings
        size n_events n_windows rank (the process that wrote it)
        predicted predicted_majority  (whole recording: mean probability / majority of the
                      windows that decided; -1: none, or a tie: `decisions`)
        first_window  (its first row in /windows)           int64
        seconds                                             float64
        mean_probabilities (recordings, classes)            float32, NaN without a window
    /windows/         one row a window; a recording's rows are its n_windows rows from
                      first_window on, in time order:
        recording (its row in /recordings) index t_start t_stop first_event n_events  int64,
        window [t_start, t_stop) in µs
        probabilities (n, classes) predicted (n,: -1 when classes tie at the top, as
        when the output layer is silent) spike_counts (n, classes)
        firing_rates (n, layers) @layer_names               (predictions)
        encoded (n, T, ...)                                 (--encode-only, instead)

Tables, not a group a recording: a run over thousands of small recordings writes, merges and
reads a few dozen datasets a commit instead of a dozen a recording (~1.5 ms a recording), and the
windows of a whole run load as one array (pandas: a ``pd.DataFrame`` of the 1-D columns, strings
through ``.asstr()``). `read_recording` gives one recording's row and windows. @job
(`job_identity`: checkpoint digest, mode, window, transform specs in the recipe's canonical form)
is checked before a run resumes (`check_job`): specs written differently but alike pass.

While running, each rank writes its finished recordings into part files
``<output>.parts/rank-<r>/<time>-<pid>-<n>.h5`` with the same two tables, @format,
@format_version and @job, and two more /recordings columns, ``part`` and ``parts``: a long
recording split between processes (`plan_tasks`) is a row a piece, which the merge joins into
one row once all its pieces are there (until then, none of them counts as done). Writing parts
is `eventsnn.inference.parts`; the merge is `eventsnn.inference.merge` (one at a time: a
lock on ``.<output name>.lock`` beside the output, a file left in place).
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import xxhash

from eventsnn.data.errors import ConfigError
from eventsnn.events.formats import recording_files

FORMAT = "eventsnn-batch-results"
FORMAT_VERSION = 4
"""4: labels are -1 where classes tie (`eventsnn.models.decisions`) and a .npy's checksum
covers its sidecar; 3: tables of recordings and windows (2: a group a recording; 1: sha256
checksums). Results of another version are not resumed (their labels or checksums differ)."""
RECORDINGS, WINDOWS = "recordings", "windows"
STATUS_DONE, STATUS_FAILED = "done", "failed"
RECORD_COLUMNS: dict[str, Any] = {
    "path": "",
    "size": -1,
    "checksum": "",
    "status": STATUS_DONE,
    "error": "",
    "n_events": 0,
    "n_windows": 0,
    "seconds": 0.0,
    "rank": 0,
    "predicted": -1,
    "predicted_majority": -1,
    "first_window": 0,
}
"""The scalar columns of /recordings and their defaults (which give each its type)."""
JOB_PARAMETERS = ("window_us", "window_events", "overlap", "transform", "sensor_size")
"""Run parameters that change the results: a resumed output must have been written with these."""
PIECE_COLUMNS = ("part", "parts")
"""/recordings columns of part files only: piece `part` of `parts` of a split recording."""
CHECKSUM = "xxh3_128"
"""Identifies a recording's bytes for resuming: fast (~10 GB/s against sha256's ~1.3 GB/s here),
not cryptographic (a changed file is to be noticed, not an attacker)."""
_HASHES = {"xxh3_128": xxhash.xxh3_128, "sha256": hashlib.sha256}


def file_digest(path: str | os.PathLike, algorithm: str = CHECKSUM) -> str:
    """Hex digest of a file's bytes with `algorithm` (xxh3_128 or sha256), read in blocks."""
    if algorithm not in _HASHES:
        raise ValueError(f"unknown checksum algorithm {algorithm!r}; known: {sorted(_HASHES)}")
    with open(path, "rb") as file:
        return hashlib.file_digest(file, _HASHES[algorithm]).hexdigest()


def file_checksum(path: str | os.PathLike, algorithm: str = CHECKSUM) -> str:
    """A recording's checksum as stored in results, ``"<algorithm>:<hex digest>"``: of its
    file's bytes, then those of the other files it is read with (`recording_files`: a .npy's
    sensor-size sidecar), so that a resume redoes a recording whose sidecar changed."""
    if algorithm not in _HASHES:
        raise ValueError(f"unknown checksum algorithm {algorithm!r}; known: {sorted(_HASHES)}")
    digest = _HASHES[algorithm]()
    for name in recording_files(Path(path)):
        with open(name, "rb") as file:
            hashlib.file_digest(file, lambda: digest)  # adds the file's bytes to `digest`
    return f"{algorithm}:{digest.hexdigest()}"


def same_checksum(path: str | os.PathLike, checksum: str) -> bool:
    """Whether the recording's files have `checksum`, computed with the algorithm it names;
    False for an unknown one."""
    algorithm = checksum.partition(":")[0]
    return algorithm in _HASHES and file_checksum(path, algorithm) == checksum


def read_columns(group: h5py.Group) -> dict[str, np.ndarray]:
    """The columns of a table as arrays; strings as str."""
    columns = {}
    for name in group:
        dataset = group[name]
        if not isinstance(dataset, h5py.Dataset):
            raise KeyError(f"/{group.name.strip('/')}/{name} is not a column")
        is_string = h5py.check_string_dtype(dataset.dtype) is not None
        columns[name] = dataset.asstr()[()] if is_string else dataset[()]
    return columns


def check_format(file: h5py.File, name: str | os.PathLike) -> None:
    """Refuse a results or part file of another format version, naming it (`name`)."""
    version = file.attrs.get("format_version")
    if file.attrs.get("format") != FORMAT or version != FORMAT_VERSION:
        raise ConfigError(
            "output",
            f"{name} is not an eventsnn batch results file of format {FORMAT_VERSION} (found "
            f"{file.attrs.get('format')!r} version {version}): give another --output, or "
            "--overwrite to replace it",
        )


@dataclass
class Tables:
    """A results or part file's /recordings table (read) and its windows' columns (types and
    shapes only), checked to hold every recording's windows."""

    path: Path
    records: dict[str, np.ndarray]
    schema: dict[str, tuple[np.dtype, tuple[int, ...]]]
    layer_names: str | None


def read_tables(file: h5py.File, path: str | os.PathLike) -> Tables:
    """`Tables` of an open file; ConfigError for another format, KeyError (naming the file and
    what is missing) for a damaged one."""
    check_format(file, path)
    try:
        records = read_columns(file[RECORDINGS])
        windows = file[WINDOWS]
        missing = [name for name in RECORD_COLUMNS if name not in records]
        if missing:
            raise KeyError(f"/{RECORDINGS} has no column {missing[0]!r}")
        if len({len(column) for column in records.values()}) > 1:
            raise KeyError(f"/{RECORDINGS} has columns of different lengths")
        ends = int((records["first_window"] + records["n_windows"]).max(initial=0))
        short = [name for name, column in windows.items() if len(column) < ends]
        if short or (ends and not len(windows)):
            raise KeyError(f"/{WINDOWS}/{(short or ['*'])[0]} lacks rows of its recordings")
        schema = {name: (column.dtype, column.shape[1:]) for name, column in windows.items()}
        rates = windows.get("firing_rates")
        layer_names = None if rates is None else rates.attrs.get("layer_names")
    except KeyError as error:
        raise KeyError(f"{path}: {error.args[0] if error.args else error}") from error
    return Tables(Path(path), records, schema, layer_names)


def read_output(output: str | os.PathLike) -> Tables:
    """The final output's `Tables`; a damaged one is a ConfigError naming it."""
    try:
        with h5py.File(output, "r") as file:
            return read_tables(file, output)
    except ConfigError:  # another format: its own message
        raise
    except (OSError, KeyError, ValueError, TypeError) as error:
        reason = error.args[0] if isinstance(error, KeyError) and error.args else error
        raise ConfigError(
            "output",
            f"{output} cannot be read as batch results ({reason}): give another --output, or "
            "--overwrite to replace it",
        ) from error


def read_part(path: Path) -> Tables | None:
    """A part file's `Tables`, or None (with a warning) if it cannot be read or is damaged.

    Parts are not fsynced (they are progress, not results): after a power cut one may hold
    garbage under its final name. Its recordings then count as not done and are redone.
    """
    try:
        with h5py.File(path, "r") as file:
            tables = read_tables(file, path)
        missing = [name for name in PIECE_COLUMNS if name not in tables.records]
        if missing:
            raise KeyError(f"/{RECORDINGS} has no column {missing[0]!r}")
        return tables
    except (OSError, KeyError, ValueError, TypeError) as error:  # ConfigError too: a ValueError
        skip_part(path, error)
        return None


def read_recording(file: h5py.File, path: str | os.PathLike) -> dict[str, Any]:
    """The recording `path` of an open results file: its /recordings row (plain values, and
    mean_probabilities if any) with its windows' columns under ``"windows"``. Results name
    recordings by absolute path: a relative `path` is taken from the working folder."""
    check_format(file, file.filename)
    paths = file[RECORDINGS]["path"].asstr()[()]
    path = os.path.abspath(path)
    found = np.flatnonzero(paths == path)
    if not len(found):
        raise KeyError(f"{file.filename}: no recording {path!r}")
    row = int(found[-1])
    record = {name: _plain(column[row]) for name, column in file[RECORDINGS].items()}
    record["path"] = path
    for name in ("checksum", "status", "error"):
        record[name] = _text(record[name])
    rows = slice(record["first_window"], record["first_window"] + record["n_windows"])
    record["windows"] = {name: column[rows] for name, column in file.get(WINDOWS, {}).items()}
    return record


def _text(value: Any) -> Any:
    return value.decode() if isinstance(value, bytes) else value


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def parts_dir(output: str | os.PathLike) -> Path:
    """Folder of the ranks' part files beside the output file."""
    output = Path(output)
    return output.with_name(output.name + ".parts")


def part_files(output: str | os.PathLike) -> list[Path]:
    """The committed part files of every rank, oldest first (names start with the time)."""
    return sorted(parts_dir(output).glob("rank-*/*.h5"), key=lambda path: path.name)


def iter_records(
    output: str | os.PathLike, keys: Sequence[str] | None = None
) -> Iterator[dict[str, Any]]:
    """The /recordings rows (all scalar columns, or those of `keys`) of every finished
    recording as dicts: the final file's, then the parts', oldest first. Pieces of split
    recordings are not recordings yet and are left out."""
    for tables in _all_tables(output):
        yield from _rows(tables.records, keys)


def _all_tables(output: str | os.PathLike) -> Iterator[Tables]:
    """The final file's tables, then the readable parts', oldest first."""
    output = Path(output)
    if output.exists():
        yield read_output(output)
    for path in part_files(output):  # one open at a time: a killed run may leave thousands
        tables = read_part(path)
        if tables is not None:
            yield tables


def check_job(
    output: str | os.PathLike, job: str, canonical_spec: Callable[[Any], Any] | None = None
) -> None:
    """Refuse an output, or part files of an unfinished run, written by another job (another
    checkpoint, mode, window or transform: `job_identity`): resuming would mix the two.

    A stored job's transform specs are compared through `canonical_spec` (the recipe's, which
    `job` was made with), so that results written before specs were stored in that form, or
    with the same transforms written otherwise, are not refused; a stored spec that it refuses
    (ConfigError) is compared as it is.
    """
    output = Path(output)
    files = ([output] if output.exists() else []) + part_files(output)
    for path in files:
        try:
            with h5py.File(path, "r") as file:
                check_format(file, path)
                found = str(file.attrs.get("job", ""))
        except OSError:  # an unreadable part: skipped and redone, as `read_part` says
            continue
        if found == job:
            continue
        stored = _stored_job(found, canonical_spec)
        if json.dumps(stored, sort_keys=True) != job:
            differ = _differences(json.loads(job), stored)
            raise ConfigError(
                "output",
                f"{path} holds results of another job ({', '.join(differ)} differ): "
                "resuming would mix them with this one's; give another --output, or "
                "--overwrite to replace it",
            )


def _stored_job(found: str, canonical_spec: Callable[[Any], Any] | None) -> dict[str, Any]:
    """A stored @job ({} when missing or garbled), its transform specs passed through
    `canonical_spec` where it takes them."""
    try:
        stored = json.loads(found)
    except ValueError:
        return {}
    if not isinstance(stored, dict):
        return {}
    specs = stored.get("transform")
    if canonical_spec is not None and isinstance(specs, list):
        stored["transform"] = [_canonical_or_as_is(spec, canonical_spec) for spec in specs]
    return stored


def _canonical_or_as_is(spec: Any, canonical_spec: Callable[[Any], Any]) -> Any:
    """`canonical_spec(spec)`, or the spec as stored when it refuses it (an unknown class,
    garbled arguments): compared as it is, it differs."""
    try:
        return canonical_spec(spec)
    except Exception:  # ConfigError, or a trusted module that fails to import: as it is
        return spec


def _differences(job: Mapping[str, Any], stored: Mapping[str, Any]) -> list[str]:
    """The keys that `job` and the `stored` job do not hold alike; ["job"] when the difference
    is in the text only."""
    keys = dict.fromkeys([*job, *stored])
    return [key for key in keys if _job_text(stored.get(key)) != _job_text(job.get(key))] or ["job"]


def _job_text(value: Any) -> str:
    """A job's value as @job holds it (JSON, keys sorted): 1000 and 1000.0 differ there."""
    return json.dumps(value, sort_keys=True)


def job_identity(metadata: Mapping[str, Any]) -> str:
    """What makes two runs' results comparable, as stored in @job: the checkpoint's digest, the
    mode and the window and transform parameters (JSON, keys sorted; the transform specs as the
    recipe records them, in canonical form)."""
    parameters = metadata["parameters"]
    job = {name: metadata[name] for name in ("checkpoint_sha256", "mode")}
    job.update({name: parameters[name] for name in JOB_PARAMETERS})
    return json.dumps(job, sort_keys=True)


def skip_part(path: Path, error: Exception) -> None:
    warnings.warn(
        f"{path}: skipped, not a readable part file ({error}); its recordings will be redone",
        stacklevel=3,
    )


def _rows(
    records: Mapping[str, np.ndarray], keys: Sequence[str] | None
) -> Iterator[dict[str, Any]]:
    scalar = [name for name, column in records.items() if column.ndim == 1]
    names = [
        n for n in (scalar if keys is None else keys) if n in scalar and n not in PIECE_COLUMNS
    ]
    whole = records["parts"] == 1 if "parts" in records else np.ones(len(records["path"]), bool)
    for row in np.flatnonzero(whole):
        yield {name: _plain(records[name][row]) for name in names}


def completed(output: str | os.PathLike, failed: bool = True) -> dict[str, str]:
    """path -> checksum ("<algorithm>:<hex>") of the recordings a previous run finished (done,
    or failed on content unless not `failed`), the newest result of each; a split recording
    counts once a part file holds each of its pieces (the merge joins them), so a run killed
    before merging does not redo it."""
    done: dict[str, str] = {}
    pieces: dict[tuple[str, int, str], set[int]] = {}
    for tables in _all_tables(output):
        records = tables.records
        counts = records.get("parts", np.ones(len(records["path"]), dtype=np.int64))
        for row, (path, checksum) in enumerate(
            zip(records["path"], records["checksum"], strict=True)
        ):
            if not checksum:  # the file could not be read: an older result stands
                continue
            if not failed and records["status"][row] == STATUS_FAILED:  # to be redone
                done.pop(path, None)
                continue
            if counts[row] > 1:
                found = pieces.setdefault((path, int(counts[row]), checksum), set())
                found.add(int(records["part"][row]))
                if len(found) < counts[row]:
                    continue
            done[path] = checksum
    return done
