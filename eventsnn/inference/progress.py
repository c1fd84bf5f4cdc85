"""What the other ranks of a run have done, for rank 0's progress bar: read from their part files.

Ranks share no state while they predict, but each commits its finished recordings to part files
at least every `--commit-seconds`, in a folder every rank sees (rank 0 merges them). Rank 0
reads each new part file of the other ranks once (a few small columns), so its bar counts
every rank's recordings, windows and events, up to a commit behind. Part file names sort by
the time they were made (`parts.new_part_path`): a rank's new files are those named after its
last one read, so a look costs a listing of names, not a path object a file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import h5py

from eventsnn.inference.results import RECORDINGS, WINDOWS


@dataclass
class Done:
    """Recordings (or pieces of split ones), windows and events done."""

    recordings: int = 0
    windows: int = 0
    events: int = 0


@dataclass
class OtherRanks:
    """The work the ranks other than `own` (a rank's parts folder) have committed in the parts
    folder `parts` since this object was made (part files already there are an earlier run's)."""

    parts: Path
    own: Path
    done: Done = field(default_factory=Done)
    last: dict[Path, str] = field(default_factory=dict)
    """The name of the last part file read (or there at the start) in each rank's folder."""

    def __post_init__(self) -> None:
        for folder, names in self._new_files():
            self.last[folder] = names[-1]

    def update(self) -> int:
        """Read the part files committed since the last call; the recordings they hold."""
        before = self.done.recordings
        for folder, names in self._new_files():
            self.last[folder] = names[-1]
            for name in names:
                try:
                    recordings, windows, events = _work(folder / name)
                except (OSError, KeyError, ValueError):  # damaged: the merge will say so
                    continue
                self.done.recordings += recordings
                self.done.windows += windows
                self.done.events += events
        return self.done.recordings - before

    def _new_files(self) -> list[tuple[Path, list[str]]]:
        """(folder, new part file names in order) of each other rank with new ones."""
        found = []
        for folder in sorted(self.parts.glob("rank-*")):
            if folder == self.own or not folder.is_dir():
                continue
            last = self.last.get(folder, "")
            with os.scandir(folder) as entries:
                names = sorted(e.name for e in entries if e.name.endswith(".h5") and e.name > last)
            if names:
                found.append((folder, names))
        return found


def _work(path: Path) -> tuple[int, int, int]:
    """A part file's recordings, windows and events: a recording's events are its n_events,
    a piece's (of a split recording, cut without overlap) those of its windows."""
    with h5py.File(path, "r") as file:
        records = file[RECORDINGS]
        n_events, pieces = records["n_events"][()], records["parts"][()] > 1
        events = int(n_events[~pieces].sum())
        if pieces.any() and WINDOWS in file:
            of_piece = pieces[file[WINDOWS]["recording"][()]]
            events += int(file[WINDOWS]["n_events"][()][of_piece].sum())
        return len(n_events), int(records["n_windows"][()].sum()), events
