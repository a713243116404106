#!/usr/bin/env bash
# Set up (scripts/setup.sh) and run the default test suite. MNIST comes from $GAPBENCH_DATA, by default
# ../shared/data beside the checkout. Extra arguments go to pytest (e.g. -m slow).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
VENV="${GAPBENCH_VENV:-.venv}"
export GAPBENCH_DATA="${GAPBENCH_DATA:-$(cd .. && pwd)/shared/data}"
exec "$VENV/bin/python" -m pytest -q "$@"
