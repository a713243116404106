#!/usr/bin/env bash
# Set up (scripts/setup.sh) and run `gapbench demo`: the headline results of both papers in one HTML report.
# MNIST comes from $GAPBENCH_DATA if set, else ../shared/data beside the checkout when present, else the
# per-user cache (see `gapbench data list`); when none has it, this says what to run and exits 2.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
VENV="${GAPBENCH_VENV:-.venv}"
SHARED="$(cd .. && pwd)/shared/data"
if [ -z "${GAPBENCH_DATA:-}" ] && [ -d "$SHARED/mnist" ]; then
    export GAPBENCH_DATA="$SHARED"     # for this process only; a new shell reads the cache setup.sh filled
fi
MNIST_OK='import sys; from gapbench.data.fetch import dataset_status; sys.exit(dataset_status("mnist").state != "verified")'
if ! "$VENV/bin/python" -c "$MNIST_OK"; then
    "$VENV/bin/gapbench" data list
    echo "demo: MNIST is not present and verified in the data directory above. Run"
    echo "    $VENV/bin/gapbench data fetch mnist              # canonical URL, checksum-verified"
    echo "or, with a local copy of the four .gz files,"
    echo "    $VENV/bin/gapbench data fetch mnist --from DIR"
    echo "then run bash scripts/demo.sh again."
    exit 2
fi
exec "$VENV/bin/gapbench" demo "$@"
