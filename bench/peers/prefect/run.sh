#!/usr/bin/env bash
# Runs bench/peers/prefect/flow40.py (the peer of `attune bench --mode workflow --scenario
# py40`) in a virtualenv of its own under ~/.cache/attune/prefect-venv, made on first use
# with `pip install 'prefect>=3,<4'` (needs PyPI). RUNS=3 by default.
set -euo pipefail
cd "$(dirname "$0")"
venv="${PREFECT_VENV:-$HOME/.cache/attune/prefect-venv}"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import prefect' 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet 'prefect>=3,<4'
fi
"$venv/bin/python" -c 'import prefect; print("prefect", prefect.__version__)'
home="$(mktemp -d)"
trap 'rm -rf "$home"' EXIT
PREFECT_HOME="$home" PREFECT_LOGGING_LEVEL=WARNING PREFECT_SERVER_ANALYTICS_ENABLED=false "$venv/bin/python" flow40.py
