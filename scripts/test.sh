#!/usr/bin/env bash
# Set up (scripts/setup.sh: gapbench[dev,ray]) and run the default test suite, the live Ray cluster tests included. MNIST comes from $GAPBENCH_DATA, by default
# ../shared/data beside the checkout. Extra arguments go to pytest (e.g. -m slow).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
VENV="${GAPBENCH_VENV:-.venv}"
export GAPBENCH_DATA="${GAPBENCH_DATA:-$(cd .. && pwd)/shared/data}"
exec "$VENV/bin/python" -m pytest -q "$@"
