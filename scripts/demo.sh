#!/usr/bin/env bash
# The main job: a complete production on the embedded defaults (SQLite, local executor).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/python -m prodagent.demo "$@"
