"""glibc malloc tuning: fewer page faults per network batch, and the user's own settings win."""

import os
import subprocess
import sys

import pytest

from eventsnn import allocator

FAULTS_PER_BATCH = """
import resource, sys, torch
from eventsnn.allocator import tune_allocator
from eventsnn.nn import build
tuned = tune_allocator() if sys.argv[1] == "tune" else False
torch.set_num_threads(1)
conv = lambda out: {"conv": {"out": out, "kernel": 3, "padding": 1}}
spec = [{"sumpool": 2}, conv(16), {"lif": {}}, {"maxpool": 2}, conv(32), {"lif": {}},
        {"maxpool": 2}, "flatten", {"linear": {"out": 10}}, {"lif": {}}]  # conf/ndigits.yaml
net = build(spec, (2, 34, 34))
x = torch.rand(15, 32, 2, 34, 34).lt(0.05).float()  # NDigits' batch: 480 frames
faults = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_minflt
with torch.no_grad():
    net(x), net(x)
    before = faults()
    for _ in range(4):
        net(x)
print(tuned, (faults() - before) // 4)
"""


def _faults_per_batch(mode: str) -> tuple[str, int]:
    env = {k: v for k, v in os.environ.items() if k not in allocator.USER_SETTINGS}
    done = subprocess.run(
        [sys.executable, "-c", FAULTS_PER_BATCH, mode],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    tuned, faults = done.stdout.split()
    return tuned, int(faults)


@pytest.mark.skipif(not allocator._glibc(), reason="tunes glibc's malloc only")
def test_tuned_process_stops_faulting_in_each_batch_activations():
    """A batch's activations are ~10 MB: untuned, glibc maps them in anew every batch."""
    untuned, plain = _faults_per_batch("plain")
    tuned, fewer = _faults_per_batch("tune")
    assert (untuned, tuned) == ("False", "True")
    assert plain > 1000  # ~4 MB of fresh pages a batch at least
    assert fewer * 4 < plain


@pytest.mark.parametrize(
    "setting",
    [
        ("MALLOC_TRIM_THRESHOLD_", "1000000"),
        ("LD_PRELOAD", "libjemalloc.so.2"),
        ("GLIBC_TUNABLES", "glibc.malloc.trim_threshold=1000000"),
    ],
)
def test_user_allocator_settings_win(monkeypatch, setting):
    monkeypatch.setenv(*setting)
    assert allocator.tune_allocator() is False


def test_tuning_can_be_switched_off(monkeypatch):
    monkeypatch.setenv("EVENTSNN_MALLOC_TUNING", "0")
    assert allocator.tune_allocator() is False
