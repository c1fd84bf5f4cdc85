"""`eventsnn ckpt info PATH` and `eventsnn ckpt convert IN.ckpt OUT.h5`: inspect and convert."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from eventsnn.checkpoint import CheckpointError, convert, describe


def main(argv: list[str]) -> int:
    """Run `ckpt info` or `ckpt convert`; argv[0] is "ckpt". Returns the exit code."""
    args = _parser().parse_args(argv[1:])
    try:
        if args.action == "info":
            print(format_summary(describe(args.path)))
        else:
            convert(args.source, args.target, model_class=args.model_class)
            print(f"wrote {args.target}")
    except (CheckpointError, FileNotFoundError) as error:
        print(f"eventsnn ckpt: {error}", file=sys.stderr)
        return 1
    return 0


def format_summary(summary: dict[str, Any]) -> str:
    """The lines `ckpt info` prints for a :func:`eventsnn.checkpoint.describe` summary."""
    rows = [
        ("path", f"{summary['path']} ({_size(summary['file_bytes'])})"),
        (
            "format",
            f"version {summary['format_version']}, written by eventsnn "
            f"{summary['eventsnn_version']} at {summary['created']}",
        ),
        ("model class", summary["model_class"] or "(not recorded)"),
        ("epoch", _or_dash(summary["epoch"])),
        ("global step", _or_dash(summary["global_step"])),
        (
            "parameters",
            f"{summary['parameters']:,} in {summary['tensors']} tensors "
            f"({_size(summary['tensor_bytes'])})",
        ),
        ("contents", ", ".join(summary["contents"])),
    ]
    return "\n".join(f"{name:<12} {value}" for name, value in rows)


def _or_dash(value: Any) -> str:
    return "-" if value is None else str(value)


def _size(n_bytes: int) -> str:
    for unit in ("B", "kB", "MB"):
        if n_bytes < 1000:
            return f"{n_bytes:.0f} {unit}" if unit == "B" else f"{n_bytes:.1f} {unit}"
        n_bytes /= 1000
    return f"{n_bytes:.1f} GB"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="eventsnn ckpt", description=__doc__)
    actions = parser.add_subparsers(dest="action", required=True)
    info = actions.add_parser("info", help="print the layout summary of a checkpoint")
    info.add_argument("path", help="an HDF5 checkpoint (.h5)")
    conv = actions.add_parser("convert", help="convert a Lightning .ckpt into an HDF5 checkpoint")
    conv.add_argument("source", help="the Lightning checkpoint (.ckpt)")
    conv.add_argument("target", help="the HDF5 checkpoint to write (.h5)")
    conv.add_argument(
        "--model-class",
        help="import path of the LightningModule, recorded for load_model (e.g. "
        "eventsnn.models.classifier.Classifier)",
    )
    return parser
