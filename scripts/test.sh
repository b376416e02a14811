#!/usr/bin/env bash
# The whole test suite, from a clean clone: installs what the tests need, starts MariaDB and a
# single-node Slurm, then runs pytest in
# PYTEST_WORKERS (default 2) processes. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/mariadb.sh
scripts/xrootd.sh install || echo "warning: XRootD could not be installed; the XRootD tests will say why"
scripts/prometheus.sh
scripts/chromium.sh
if [ -x scripts/slurm/start-slurm.sh ]; then
  scripts/slurm/start-slurm.sh || echo "warning: Slurm did not start; the Slurm tests will say why"
fi
.venv/bin/ruff check .
set +e
# Two workers on two cores (three made the suite slower and its timings flaky); work stealing
# rebalances the long end-to-end tests when a worker runs out. The slowest tests are listed at
# the end, to see where the suite's time goes.
.venv/bin/python -m pytest -n "${PYTEST_WORKERS:-2}" --dist worksteal --durations=25 "$@"
code=$?
set -e
if [ "$code" -eq 5 ]; then
  echo "pytest collected no tests: that is a failure" >&2
  exit 1
fi
exit "$code"
