#!/usr/bin/env bash
# Create .venv (if needed) and install gapbench with its test tools and the ray extra (tests/test_ray.py
# starts a live two-node Ray cluster). torch==2.13.0 is installed first and explicitly: it is the CPU build
# the machines carry; an unpinned torch would pull a multi-GB CUDA build.
# Then, when ../shared/data/mnist exists beside the checkout, copy MNIST (checksum-verified) into the per-user
# cache, the data directory `gapbench` reads when neither --data-dir nor GAPBENCH_DATA is set: so `gapbench`
# finds MNIST in a new shell without any export.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${GAPBENCH_VENV:-.venv}"
if [ ! -x "$VENV/bin/python" ]; then
    echo "setup: creating the virtual environment $VENV …"
    python3 -m venv "$VENV"
fi
# pip shows what it downloads and installs; "Requirement already satisfied" lines (one per package on a
# second run) are dropped. Its progress bars only on a terminal: a log file gets no '\r' clutter.
PIP_BAR=off
[ -t 1 ] && PIP_BAR=on
pip_install() {
    "$VENV/bin/python" -m pip install --disable-pip-version-check --progress-bar "$PIP_BAR" "$@" \
        | { grep -v '^Requirement already satisfied' || true; }
}
echo "setup: installing torch==2.13.0 (CPU build) into $VENV …"
pip_install torch==2.13.0
echo "setup: installing gapbench[dev,ray] (editable, with its test tools: pytest, ruff, hypothesis, mpmath; and Ray, whose live two-node cluster tests run by default) …"
pip_install -e '.[dev,ray]'
echo "setup: installed: $("$VENV/bin/python" -c 'import torch, ray, gapbench; print(f"torch {torch.__version__}, ray {ray.__version__}, gapbench {gapbench.__version__}")')"

SHARED_MNIST="$(cd .. && pwd)/shared/data/mnist"
if [ -d "$SHARED_MNIST" ]; then
    echo "setup: MNIST from $SHARED_MNIST into the per-user cache (a verified local copy):"
    # env -u: the per-user cache even when the caller exported GAPBENCH_DATA (scripts/test.sh, .ci/run)
    env -u GAPBENCH_DATA "$VENV/bin/gapbench" data fetch mnist --from "$SHARED_MNIST" \
        || echo "setup: warning: MNIST was not copied (see above); 'gapbench data list' shows what is present"
else
    echo "setup: no ../shared/data/mnist beside the checkout. If 'gapbench data list' shows mnist missing, run:"
    echo "    $VENV/bin/gapbench data fetch mnist              # canonical URL, checksum-verified"
    echo "    $VENV/bin/gapbench data fetch mnist --from DIR   # or a local copy of the four .gz files"
fi
