#!/usr/bin/env bash
# Sets everything up and runs the main job on the offline default dataset.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/eventsnn fit --config conf/ndigits.yaml "$@"
