"""`eventsnn info PATH [PATH...]`: describe event recordings (format, size, count, timing)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from eventsnn.events import EventsError, read, summarize
from eventsnn.events.formats import READ_FORMATS
from pipelines.args import parse_sensor_size


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="eventsnn info", description="Describe event recordings, one block per file."
    )
    parser.add_argument("paths", nargs="+", metavar="PATH", help="event files")
    parser.add_argument("--format", choices=READ_FORMATS, help="override the format of the suffix")
    parser.add_argument(
        "--sensor-size",
        type=parse_sensor_size,
        metavar="WxHxP",
        help="sensor size for files that store none (otherwise inferred from coordinates)",
    )
    parser.add_argument(
        "--partial", action="store_true", help="describe the events before a cut or corruption"
    )
    return parser


def format_summary(summary: dict[str, Any]) -> str:
    """The text block `info` prints for one summary (see `eventsnn.events.summarize`)."""
    w, h, p = summary["sensor_size"]
    lines = [
        f"{summary['path']}",
        f"  format       {summary['format']}",
        f"  sensor size  {w} x {h} x {p} ({summary['sensor_size_source']})",
        f"  events       {summary['n_events']}",
    ]
    if summary["n_events"]:
        rate = summary["event_rate_hz"]
        lines += [
            f"  time range   {summary['t_first_us']} .. {summary['t_last_us']} us",
            f"  duration     {summary['duration_us'] / 1e6:.6f} s",
            f"  event rate   {'n/a' if rate is None else f'{rate:,.1f} events/s'}",
            f"  polarity     ON {summary['n_on']} ({100 * summary['on_fraction']:.1f} %), "
            f"OFF {summary['n_off']} ({100 * (1 - summary['on_fraction']):.1f} %)",
        ]
    if summary["truncated"]:
        lines.append("  truncated    yes (only the events before the damage)")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    """Print a block per file; a bad file prints one error line and makes the exit code 1."""
    args = _parser().parse_args(argv[1:])
    status = 0
    for path in args.paths:
        try:
            recording = read(path, args.format, partial=args.partial, sensor_size=args.sensor_size)
        except EventsError as error:
            print(f"eventsnn info: {error}", file=sys.stderr)
            status = 1
            continue
        print(format_summary(summarize(recording)))
    return status
