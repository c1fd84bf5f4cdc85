"""`eventsnn stream`: streaming inference on live (UDP, stdin) or replayed (file) events.

    eventsnn stream --checkpoint run/best.h5 --source udp://127.0.0.1:7777 \\
        --format t64_x16_y16_on8 --sensor-size 34x34x2

prints one JSON line per result on stdout (or writes them to an HDF5 log with ``--log``), a
one-line live status on stderr (events/s, steps/s, latency p50/p99, drops) and a summary at the
end (end of a file, ``--idle-stop-s`` without data, ``--duration-s``, or Ctrl-C). SIGUSR1 resets
the neuron state. Bad input (a port in use, a sensor-size mismatch, an unreadable checkpoint)
gives one error line and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any

from eventsnn.events import EventsError
from eventsnn.streaming.packets import DECODERS
from pipelines.args import parse_sensor_size

USAGE_EXAMPLE = "eventsnn stream --checkpoint run/best.h5 --source udp://127.0.0.1:7777"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="eventsnn stream",
        description="Run a spiking network on live or replayed events; one JSON line per result.",
        epilog=f"example: {USAGE_EXAMPLE} --format t64_x16_y16_on8 --sensor-size 34x34x2",
    )
    parser.add_argument("--checkpoint", required=True, help="HDF5 checkpoint of the model")
    parser.add_argument(
        "--source",
        required=True,
        help="udp://HOST:PORT, a recording file (any format eventsnn reads), or - for stdin",
    )
    parser.add_argument(
        "--format",
        choices=[*DECODERS, "csv"],
        help="packet format: UDP default t64_x16_y16_on8, stdin default csv (faery's stdout)",
    )
    parser.add_argument(
        "--no-csv-header",
        action="store_true",
        help="stdin CSV: the first line is an event, not a header (default: faery's header)",
    )
    parser.add_argument(
        "--sensor-size",
        type=parse_sensor_size,
        metavar="WxHxP",
        help="sensor size of the stream (default: the model's input shape)",
    )
    parser.add_argument(
        "--downsample",
        type=float,
        help="spatial factor applied to events before binning, as the training pipeline's "
        "Downsample (default: the per-event transforms of the checkpoint's recipe)",
    )
    parser.add_argument(
        "--step-us",
        type=int,
        help="time step (default: the training ToFrame's time_window, else 1000 us)",
    )
    parser.add_argument(
        "--window-steps", type=int, default=1, help="steps per result (default 1: every step)"
    )
    parser.add_argument("--log", help="write results to this HDF5 log instead of stdout")
    pace = parser.add_mutually_exclusive_group()
    pace.add_argument(
        "--speed", type=float, default=1.0, help="file replay speed (default 1: real time)"
    )
    pace.add_argument(
        "--as-fast-as-possible", action="store_true", help="replay a file without pacing"
    )
    parser.add_argument(
        "--packet-us",
        type=int,
        help="file replay: event time per packet (default: one step in real time, 100 steps "
        "as fast as possible)",
    )
    parser.add_argument(
        "--reset-gap-ms", type=float, help="reset the state after a gap this long without events"
    )
    parser.add_argument(
        "--max-queue-steps",
        type=int,
        help="drop the oldest queued steps past this many (default: never drop)",
    )
    parser.add_argument(
        "--max-lag-ms",
        type=float,
        help="drop queued steps whose last event arrived longer ago than this (default: never)",
    )
    parser.add_argument(
        "--idle-stop-s", type=float, help="stop after this long without UDP packets"
    )
    parser.add_argument("--duration-s", type=float, help="stop after this long")
    parser.add_argument(
        "--status-interval-s", type=float, default=1.0, help="live status period on stderr"
    )
    parser.add_argument("--no-status", action="store_true", help="no live status line")
    parser.add_argument("--save-states", help="write the model and its neuron states here at exit")
    parser.add_argument(
        "--resume-states",
        action="store_true",
        help="start from the neuron states stored in the checkpoint instead of rest",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (default 1: a step is too little work to share, and waiting for "
        "a second thread on a busy machine costs tens of ms)",
    )
    return parser


def open_source(args: argparse.Namespace, sensor_size: tuple[int, int, int]) -> Any:
    """The source that ``--source`` names."""
    from eventsnn.streaming.replay import ReplaySource
    from eventsnn.streaming.stdin import StdinSource
    from eventsnn.streaming.udp import UdpSource

    if args.source.startswith("udp://"):
        return UdpSource(
            args.source, format=args.format or "t64_x16_y16_on8", idle_stop_s=args.idle_stop_s
        )
    if args.source in ("-", "stdin://"):
        return StdinSource(args.format or "csv", sensor_size, csv_header=not args.no_csv_header)
    speed = None if args.as_fast_as_possible else args.speed
    packet_us = args.packet_us or (100 * args.step_us if speed is None else args.step_us)
    return ReplaySource(
        args.source.removeprefix("file://"),
        speed=speed,
        packet_us=packet_us,
        sensor_size=sensor_size,
    )


def until(packets: Iterable[Any], deadline: float | None) -> Iterator[Any]:
    """The packets of a source up to a monotonic-clock deadline (None: all)."""
    for packet in packets:
        yield packet
        if deadline is not None and time.monotonic() >= deadline:
            return


class Status:
    """The live status line: rates since the last line, latency percentiles, drops."""

    def __init__(self, runner: Any, source: Any, interval_s: float, enabled: bool) -> None:
        self.runner, self.source = runner, source
        self.interval_s = interval_s
        self.enabled = enabled
        self.tty = sys.stderr.isatty()
        self.last = time.monotonic()
        self.last_events = self.last_steps = 0
        self.warned_outside = False

    def tick(self) -> None:
        """Print the status line when its period has passed; warn once about outside events."""
        binner = self.runner.binner
        if binner.out_of_sensor_events and not self.warned_outside:
            self.warned_outside = True
            size = f"{binner.width}x{binner.height}x{binner.polarities}"
            print(
                f"eventsnn stream: warning: events outside the sensor {size} are counted and "
                "skipped: is --sensor-size right?",
                file=sys.stderr,
            )
        now = time.monotonic()
        if not self.enabled or now - self.last < self.interval_s:
            return
        stats = self.runner.stats
        elapsed = now - self.last
        latency = stats.latency_percentiles()
        line = (
            f"{(stats.events - self.last_events) / elapsed:,.0f} ev/s  "
            f"{(stats.steps - self.last_steps) / elapsed:,.0f} steps/s  "
            f"latency p50 {latency['p50']:.2f} ms p99 {latency['p99']:.2f} ms  "
            f"drops: kernel {self.source.stats.kernel_dropped_packets} packets, "
            f"queue {stats.dropped_events} events, malformed "
            f"{self.source.stats.malformed_packets} packets"
        )
        print(
            ("\r" + line + "\033[K") if self.tty else line,
            end="" if self.tty else "\n",
            file=sys.stderr,
            flush=True,
        )
        self.last, self.last_events, self.last_steps = now, stats.events, stats.steps


def summary(runner: Any, source: Any, seconds: float) -> dict[str, Any]:
    """What the run did, for stderr and the log."""
    stats = runner.stats
    return {
        "seconds": round(seconds, 3),
        "events": stats.events,
        "steps": stats.steps,
        "results": stats.results,
        "events_per_s": round(stats.events / seconds, 1) if seconds else None,
        "steps_per_s": round(stats.steps / seconds, 1) if seconds else None,
        "latency_ms": {k: round(v, 4) for k, v in stats.latency_percentiles().items()},
        "model_calls": stats.model_calls,
        "resets": stats.resets,
        "dropped_events": stats.dropped_events,
        "dropped_steps": stats.dropped_steps,
        "late_events": runner.binner.late_events,
        "out_of_sensor_events": runner.binner.out_of_sensor_events,
        "source": source.stats.as_dict(),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Load, stream, report: the command without its error handling."""
    import torch

    from eventsnn.checkpoint import load_model
    from eventsnn.encoding.transforms import Downsample
    from eventsnn.streaming.encoding import encoding_from_checkpoint
    from eventsnn.streaming.log import StreamLog
    from eventsnn.streaming.runner import StreamRunner

    if args.threads:
        torch.set_num_threads(args.threads)
    model = load_model(args.checkpoint)
    encoding = encoding_from_checkpoint(args.checkpoint)
    step_note = [encoding.step_note] if encoding.step_note and not args.step_us else []
    for note in encoding.notes + step_note:
        print(f"eventsnn stream: note: {note}", file=sys.stderr)
    shape = getattr(model, "input_shape", None)
    model_size = shape and (shape[2], shape[1], shape[0])
    frame_size, event_filter = encoding.frame_size or model_size, encoding.event_filter
    if args.downsample:
        event_filter = Downsample(spatial_factor=args.downsample)
    sensor_size = args.sensor_size or (None if event_filter else frame_size)
    if sensor_size is None:
        raise EventsError(f"{args.checkpoint}: give --sensor-size (the stream's WxHxP)")
    if args.downsample:
        width, height, polarities = sensor_size
        frame_size = (int(width * args.downsample), int(height * args.downsample), polarities)
    elif event_filter is None:
        frame_size = sensor_size
    step_us = args.step_us or encoding.step_us or 1000
    if not (args.step_us or encoding.step_us):
        print(f"eventsnn stream: note: {step_us} us steps", file=sys.stderr)
    args.step_us = step_us
    runner = StreamRunner(
        model,
        frame_size,
        event_filter=event_filter,
        step_us=step_us,
        window_steps=args.window_steps,
        max_queue_steps=args.max_queue_steps,
        max_lag_ms=args.max_lag_ms,
        reset_gap_us=None if args.reset_gap_ms is None else int(args.reset_gap_ms * 1000),
        keep_states=args.resume_states,
    )
    source = open_source(args, sensor_size)
    signal.signal(signal.SIGUSR1, lambda *_: runner.request_reset())
    status = Status(runner, source, args.status_interval_s, not args.no_status)
    metadata = {
        "checkpoint": args.checkpoint,
        "source": args.source,
        "step_us": args.step_us,
        "window_steps": args.window_steps,
        "sensor_size": list(sensor_size),
    }
    log = StreamLog(args.log, n_classes=_n_outputs(model), metadata=metadata) if args.log else None
    emit = log.append if log else _print_json
    deadline = None if args.duration_s is None else time.monotonic() + args.duration_s
    started = time.monotonic()
    try:
        if hasattr(source, "address"):
            host, port = source.address
            buffer_mb = source.stats.socket_buffer_bytes / 2**20
            print(
                f"eventsnn stream: listening on udp://{host}:{port} "
                f"(receive buffer {buffer_mb:.0f} MiB; raise net.core.rmem_max for more)",
                file=sys.stderr,
                flush=True,
            )
        runner.run(until(source, deadline), on_result=emit, on_idle=status.tick)
    except KeyboardInterrupt:
        for result in runner.finish():
            emit(result)
    finally:
        source.close()
    report = summary(runner, source, time.monotonic() - started)
    if args.save_states:
        runner.save_states(args.save_states)
    if log:
        log.close(summary=report)
    return report


def _n_outputs(model: Any) -> int:
    classes = getattr(model, "num_classes", None)
    if classes is None:
        raise EventsError("the model does not say its number of outputs (num_classes)")
    return int(classes)


def _print_json(result: Any) -> None:
    print(json.dumps(result.as_dict()), flush=True)


def main(argv: list[str]) -> int:
    """Run the command; one error line and exit code 2 for bad input."""
    args = _parser().parse_args(argv[1:])
    from eventsnn.checkpoint import CheckpointError

    try:
        report = run(args)
    except (EventsError, CheckpointError, ValueError) as error:
        print(f"eventsnn stream: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("eventsnn stream: interrupted before the stream started", file=sys.stderr)
        return 130
    if not args.no_status and sys.stderr.isatty():
        print(file=sys.stderr)
    print("eventsnn stream: summary " + json.dumps(report), file=sys.stderr)
    return 0
