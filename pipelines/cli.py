"""The `eventsnn` command: dispatches a sub-command to the module that implements it."""

from __future__ import annotations

import importlib
import os
import sys

from eventsnn.allocator import tune_allocator

# sub-command -> module under pipelines/ with a `main(argv: list[str]) -> int`
COMMANDS = {
    "fit": "train",
    "validate": "train",
    "test": "train",
    "predict": "train",
    "info": "info",
    "batch": "batch",
    "stream": "stream",
    "ckpt": "ckpt",
}

TRAINING = "train"
"""The module whose commands train: they run with OpenMP's passive wait policy (see `main`)."""

USAGE = """usage: eventsnn COMMAND [options]

commands:
  fit|validate|test|predict  train or evaluate a model (LightningCLI; --config conf/<recipe>.yaml)
  info PATH                  describe an event recording
  batch                      run a checkpoint over a folder of recordings
  stream                     streaming inference on live or replayed events
  ckpt info|convert          inspect or convert checkpoints
"""


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script."""
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0
    name = argv[0]
    if name not in COMMANDS:
        print(f"eventsnn: unknown command {name!r}\n\n{USAGE}", file=sys.stderr)
        return 2
    if COMMANDS[name] == TRAINING:
        # torch's OpenMP workers otherwise spin between operations and take the cores from the
        # fused neuron kernels' helper threads, which eventsnn.nn only starts in passive mode:
        # an NDigits training epoch ran ~30% faster (benchmarks/train_step.md). Set before torch
        # is imported; a user's own OMP_WAIT_POLICY wins. Batch and stream keep the default:
        # inference measured either way by run, and sleeping workers add wake-up latency to
        # each small step of a stream.
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    # per-batch tensors of several MB would otherwise page-fault in anew every batch (2.5x on
    # the NDigits network's batch of 32): see eventsnn.allocator
    tune_allocator()
    module = importlib.import_module(f"pipelines.{COMMANDS[name]}")
    return int(module.main(argv) or 0)


if __name__ == "__main__":
    sys.exit(main())
