"""Fixtures of the batch-engine tests: a live single-node Slurm, started on demand.

The session fixture checks that `sinfo` answers; if not it runs scripts/slurm/start-slurm.sh
(which installs Slurm with apt when missing). Outside CI a cluster that cannot be had skips the
live tests with the reason; in CI (CI=true) it fails them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
START_SLURM = REPO / "scripts" / "slurm" / "start-slurm.sh"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _sinfo_answers() -> bool:
    if shutil.which("sinfo") is None:
        return False
    proc = subprocess.run(
        ["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=30, check=False
    )
    return proc.returncode == 0 and any(
        s.startswith(("idle", "mixed", "alloc")) for s in proc.stdout.split()
    )


def _unavailable(reason: str) -> None:
    if IN_CI:
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def slurm_cluster() -> None:
    """A responding Slurm controller with an idle or busy node."""
    if _sinfo_answers():
        return
    if os.geteuid() != 0:
        _unavailable("Slurm is not running and starting it needs root (munged, slurmd)")
    try:
        proc = subprocess.run(
            ["bash", str(START_SLURM)], capture_output=True, text=True, timeout=240, check=False
        )
    except subprocess.TimeoutExpired:
        _unavailable(f"{START_SLURM} did not finish in 240 s")
        return
    if proc.returncode != 0 or not _sinfo_answers():
        _unavailable(
            f"Slurm could not be started by {START_SLURM} (rc={proc.returncode}): "
            f"{(proc.stderr or proc.stdout).strip()[-800:]}"
        )
