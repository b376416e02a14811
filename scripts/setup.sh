#!/usr/bin/env bash
# Create the project's virtualenv (.venv) and install prodagent with its test and bench extras.
# Idempotent: re-running only installs what changed in pyproject.toml.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
stamp=.venv/.installed-$(sha1sum pyproject.toml | cut -c1-12)
if [ ! -f "$stamp" ]; then
  # pythia8mc is pinned in pyproject.toml: an unpinned install builds Pythia from source for an hour.
  .venv/bin/pip install --quiet --disable-pip-version-check -e '.[test,bench]'
  rm -f .venv/.installed-*
  touch "$stamp"
fi
