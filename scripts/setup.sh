#!/usr/bin/env bash
# Creates .venv with the pinned CPU torch first, then the project and its dev extras.
# Idempotent: re-runs only when pyproject.toml changed since the last successful install.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3
stamp=.venv/.installed
want=$(sha256sum pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
export PIP_DISABLE_PIP_VERSION_CHECK=1
.venv/bin/python -m pip install -q --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
# The pinned CPU build must come first: a bare "torch" requirement would pull a multi-GB CUDA build.
.venv/bin/python -m pip install -q torch==2.13.0 2>&1 | grep -v "^WARNING: Location" || true
.venv/bin/python -m pip install -q -e ".[dev]" 2>&1 | grep -v "^WARNING: Location" || true
# Test-only peers whose metadata demands torchvision/torchaudio (a second, CUDA torch) although
# their neuron code never imports them: installed without dependencies, theirs listed by hand.
.venv/bin/python -m pip install -q --no-deps norse==1.1.0 spikingjelly==2.0.0 2>&1 \
  | grep -v "^WARNING: Location" || true
.venv/bin/python -m pip install -q loguru tqdm scipy 2>&1 | grep -v "^WARNING: Location" || true
.venv/bin/python -c "import eventsnn, torch" # fail loudly if the install did not work
echo "$want" > "$stamp"
