#!/usr/bin/env bash
# Creates .venv with the pinned CPU torch first, then the project and its dev extras.
# Idempotent: re-runs only when pyproject.toml or this script changed since the last good install.
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

# pip install, quiet, without this machine's notes about absent local package folders;
# fails when pip fails.
pip_install() {
  .venv/bin/python -m pip install -q "$@" 2>&1 | { grep -v "^WARNING: Location" || true; }
  return "${PIPESTATUS[0]}"
}

pip_install --upgrade pip
# The pinned CPU build must come first: a bare "torch" requirement would pull a multi-GB CUDA build.
pip_install torch==2.13.0
pip_install -e ".[dev]"
# Test-only peers whose metadata demands torchvision/torchaudio (a second, CUDA torch) although
# their neuron code never imports them: installed without dependencies, the ones used listed here.
pip_install --no-deps norse==1.1.0 spikingjelly==2.0.0
pip_install loguru tqdm scipy
.venv/bin/python -c "import eventsnn, torch, norse.torch, spikingjelly.activation_based"
echo "$want" > "$stamp"
