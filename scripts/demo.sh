#!/usr/bin/env bash
# Set up (scripts/setup.sh) and run `gapbench demo`: the headline results of both papers in one HTML report.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
VENV="${GAPBENCH_VENV:-.venv}"
export GAPBENCH_DATA="${GAPBENCH_DATA:-$(cd .. && pwd)/shared/data}"
exec "$VENV/bin/gapbench" demo "$@"
