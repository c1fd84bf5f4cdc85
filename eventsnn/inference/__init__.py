"""Batch inference over recordings: windows, encoding, `Trainer.predict`, HDF5 results.

`WindowConfig` / `iter_windows` slice recordings while streaming them; `data_recipe` reads the
transforms and window a checkpoint was trained with; `WindowDataModule` shards recordings over
ranks; `WindowPredictor` runs the model; `ResultsWriter` writes per-rank parts and merges them
(layout in `eventsnn.inference.results`). `pipelines/batch.py` puts them together.
"""

from eventsnn.inference.dataset import RecordingTask, WindowDataModule, WindowDataset
from eventsnn.inference.merge import merge
from eventsnn.inference.predictor import WindowPredictor
from eventsnn.inference.recipe import (
    DataRecipe,
    build_transforms,
    canonical_spec,
    canonical_specs,
    data_recipe,
    read_data_hparams,
)
from eventsnn.inference.results import (
    FORMAT,
    FORMAT_VERSION,
    check_job,
    completed,
    file_checksum,
    file_digest,
    iter_records,
    job_identity,
    parts_dir,
    read_recording,
    same_checksum,
)
from eventsnn.inference.windows import Window, WindowConfig, iter_windows
from eventsnn.inference.writer import ResultsWriter

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "DataRecipe",
    "RecordingTask",
    "ResultsWriter",
    "Window",
    "WindowConfig",
    "WindowDataModule",
    "WindowDataset",
    "WindowPredictor",
    "build_transforms",
    "canonical_spec",
    "canonical_specs",
    "check_job",
    "completed",
    "data_recipe",
    "file_checksum",
    "file_digest",
    "iter_records",
    "iter_windows",
    "job_identity",
    "merge",
    "parts_dir",
    "read_data_hparams",
    "read_recording",
    "same_checksum",
]
