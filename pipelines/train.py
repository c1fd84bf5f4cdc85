"""`eventsnn fit|validate|test|predict --config conf/<recipe>.yaml`: Lightning's CLI over a recipe.

Model and data are given by class path in the YAML (any LightningModule / LightningDataModule),
every field can be overridden on the command line, and ``--print_config`` prints the whole
resolved recipe. Defaults added here: a CSV logger under ``runs/``, HDF5 checkpoints (best by
``val_acc`` and last) beside the logs, a learning-curve PNG after fit, a test run on the best
checkpoint after fit that prints the test accuracy, and for ``predict`` an HDF5 file of the
predictions (``--predictions``, default ``predictions.h5`` in the run's log folder). Mistakes in
the recipe end in one error line that names the key, not a traceback.
"""

from __future__ import annotations

import re
import sys
import warnings
from argparse import ArgumentError
from pathlib import Path

import pytorch_lightning as pl
from pytorch_lightning.cli import LightningArgumentParser, LightningCLI

from eventsnn.checkpoint import (
    CheckpointError,
    HDF5CheckpointIO,
    HDF5ModelCheckpoint,
    read_checkpoint,
)
from eventsnn.data.errors import ConfigError
from eventsnn.events.core import EventsError
from eventsnn.models.plots import LearningCurvePlot
from eventsnn.models.predictions import PredictionsWriter
from eventsnn.nn import NetworkError, NeuronConfigError, SurrogateError

KEYED_ERRORS: dict[type[Exception], str] = {
    NetworkError: "model.network",
    NeuronConfigError: "model.network",
    SurrogateError: "model.network",
}
"""Project exceptions whose message lacks the config key, with the key to prefix."""

LIGHTNING_CKPT_NAMES = ("last", "best", "hpc", "registry")
"""``ckpt_path`` values Lightning resolves itself (not file paths)."""

PROJECT_ERRORS = (ConfigError, EventsError, CheckpointError, *KEYED_ERRORS)

_GENERIC_LINES = re.compile(
    r"^(Parser key|Does not validate|Subtypes:|Errors:|Given value|- Expected a <class 'NoneType'>"
    r"|- Problem with given class_path)"
)


def argument_error_line(message: str) -> str:
    """The one informative line of a jsonargparse error, prefixed with the config key it is about.

    jsonargparse explains a bad key over a dozen lines (union subtypes, given values); users need
    the key and what is wrong with it.
    """
    key = re.search(r'Parser key "([^"]+)"', message)
    option = re.search(r"Option '([^']+)' is not accepted", message)
    owner = re.search(r"class_path '([^']+)'", message)
    if key and option:
        where = f" by {owner.group(1)}" if owner else ""
        return f"{key.group(1)}.{option.group(1)}: no such key (not accepted{where})"
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    specific = [line for line in lines if not _GENERIC_LINES.match(line)]
    detail = (specific or lines or [message])[0]
    return f"{key.group(1)}: {detail}" if key else detail


def project_error(err: BaseException) -> BaseException | None:
    """The project exception behind ``err`` (jsonargparse wraps errors raised in ``__init__``)."""
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, PROJECT_ERRORS):
            return err
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return None


def error_line(err: BaseException) -> str:
    """One line for a project exception, with its config key when the message lacks one."""
    for kind, key in KEYED_ERRORS.items():
        if isinstance(err, kind):
            return f"{key}: {err}"
    return str(err)


class EventsnnCLI(LightningCLI):
    """LightningCLI in subclass mode with the project's defaults (see the module docstring)."""

    def __init__(self, args: list[str]) -> None:
        super().__init__(
            model_class=pl.LightningModule,
            datamodule_class=pl.LightningDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            save_config_kwargs={"overwrite": True},
            parser_kwargs={"exit_on_error": False},
            trainer_defaults={
                "default_root_dir": "runs",
                "logger": {
                    "class_path": "pytorch_lightning.loggers.CSVLogger",
                    "init_args": {"save_dir": "runs", "name": "eventsnn"},
                },
                "callbacks": [LearningCurvePlot()],
            },
            args=args,
        )

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        """The checkpoint callback (configurable under ``checkpoint:``) and ``test_after_fit``."""
        parser.add_lightning_class_args(HDF5ModelCheckpoint, "checkpoint")
        parser.set_defaults(
            {
                "checkpoint.monitor": "val_acc",
                "checkpoint.mode": "max",
                "checkpoint.filename": "best",
                "checkpoint.save_last": True,
            }
        )
        parser.add_argument(
            "--test_after_fit",
            type=bool,
            default=True,
            help="after fit, test the best checkpoint and print the test accuracy",
        )
        parser.add_argument(
            "--predictions",
            type=str | None,
            default=None,
            help="predict: the HDF5 file for the probabilities, predicted classes and labels "
            "(default: predictions.h5 in the run's log folder)",
        )

    def _parse_ckpt_path(self) -> None:
        """Take the model's hyper-parameters from an HDF5 ``--ckpt_path`` as Lightning does from a
        ``.ckpt`` (its own reader would ``torch.load`` the file): recipe values are overridden."""
        subcommand = self.config.get("subcommand")
        ckpt_path = self.config[subcommand].get("ckpt_path") if subcommand else None
        if ckpt_path and ckpt_path not in LIGHTNING_CKPT_NAMES and not Path(ckpt_path).is_file():
            # before the data is prepared (NDigits is generated on first use)
            raise ConfigError("ckpt_path", f"{ckpt_path}: no checkpoint file there")
        if not ckpt_path or not Path(ckpt_path).is_file():
            return
        stored = read_checkpoint(ckpt_path, keys=["hyper_parameters"])
        hparams = dict(stored.get("hyper_parameters") or {})
        hparams.pop("_instantiator", None)
        if "_class_path" in hparams:
            hparams = {"class_path": hparams.pop("_class_path"), "dict_kwargs": hparams}
        if hparams:
            self.config = self.parser.parse_object({subcommand: {"model": hparams}}, self.config)

    def instantiate_trainer(self, **kwargs) -> pl.Trainer:
        """The trainer, saving and loading checkpoints as HDF5."""
        return super().instantiate_trainer(plugins=[HDF5CheckpointIO()], **kwargs)

    def _check_data_fits_model(self) -> None:
        """The data's samples must have the shape and classes the network was built for."""
        input_shape = getattr(self.model, "input_shape", None)
        sample_shape = getattr(self.datamodule, "sample_shape", None)
        if input_shape is None or sample_shape is None:
            return
        per_step = tuple(sample_shape()[1:])
        if per_step != tuple(input_shape):
            sensor = getattr(self.datamodule, "sensor_size", "?")
            raise ConfigError(
                "model.input_shape",
                f"{list(input_shape)} does not fit the data: data.transform gives {list(per_step)}"
                f" per time step (sensor size {sensor})",
            )
        classes = getattr(self.datamodule, "num_classes", 0)
        outputs = getattr(self.model, "num_classes", None)
        if outputs is not None and classes and outputs < classes:
            raise ConfigError(
                "model.network", f"the last layer has {outputs} outputs, the data {classes} classes"
            )

    before_fit = before_validate = before_test = _check_data_fits_model

    def before_predict(self) -> None:
        """Check the data as for the other commands, then add the predictions' writer."""
        self._check_data_fits_model()
        path = self.config["predict"].get("predictions")
        if not path:
            path = Path(self.trainer.log_dir or self.trainer.default_root_dir) / "predictions.h5"
        self.trainer.callbacks.append(PredictionsWriter(path))

    def after_fit(self) -> None:
        """Test the best checkpoint (or the final weights) and print the test accuracy."""
        if not self.config[self.subcommand].get("test_after_fit", True):
            return
        best = (
            self.trainer.checkpoint_callback.best_model_path
            if self.trainer.checkpoint_callback
            else ""
        )
        results = self.trainer.test(self.model, datamodule=self.datamodule, ckpt_path=best or None)
        accuracy = results[0].get("test_acc") if results else None
        if accuracy is not None:
            print(f"test accuracy: {accuracy:.2%} ({best or 'final weights'})")


def main(argv: list[str]) -> int:
    """Run a sub-command (argv[0] in fit, validate, test, predict); 2 on a configuration error."""
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
    command = argv[0] if argv else "fit"
    try:
        EventsnnCLI(args=list(argv))
    except SystemExit as done:
        return done.code if isinstance(done.code, int) else 0
    except Exception as err:
        cause = project_error(err)
        if cause is not None:
            line = error_line(cause)
        elif isinstance(err, ArgumentError):
            line = argument_error_line(str(err))
        else:
            raise
        print(f"eventsnn {command}: error: {line}", file=sys.stderr)
        return 2
    return 0
