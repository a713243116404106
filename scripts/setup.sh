#!/usr/bin/env bash
# Create .venv (if needed) and install gapbench with its test tools. torch==2.13.0 is installed first and
# explicitly: it is the CPU build the machines carry; an unpinned torch would pull a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${GAPBENCH_VENV:-.venv}"
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check torch==2.13.0
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e '.[dev]'
