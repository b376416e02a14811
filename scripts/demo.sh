#!/usr/bin/env bash
# The main job: a complete production on the embedded defaults (SQLite, local executor).
# --chain: a chained production instead (generate -> reconstruct -> merge per run, failures in both).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/python -m prodagent.demo "$@"
