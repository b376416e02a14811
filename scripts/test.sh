#!/usr/bin/env bash
# The whole test suite, from a clean clone: installs what the tests need, starts MariaDB and a
# single-node Slurm, then runs pytest. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/mariadb.sh
scripts/chromium.sh
if [ -x scripts/slurm/start-slurm.sh ]; then
  scripts/slurm/start-slurm.sh || echo "warning: Slurm did not start; the Slurm tests will say why"
fi
.venv/bin/ruff check .
set +e
.venv/bin/python -m pytest "$@"
code=$?
set -e
if [ "$code" -eq 5 ]; then
  echo "pytest collected no tests: that is a failure" >&2
  exit 1
fi
exit "$code"
