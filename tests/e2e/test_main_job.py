"""The main job, run the way README.md tells a new user to: it must complete on its own."""

from __future__ import annotations

import contextlib
import re
import subprocess
import sys
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[2]


def kill_processes_of(workdir: Path) -> list[str]:
    """Kill the processes whose command line names `workdir` (the manager, the agent's daemons,
    payloads); their command lines."""
    killed = []
    for proc in psutil.process_iter(["cmdline"]):
        cmd = " ".join(proc.info["cmdline"] or [])
        if str(workdir) in cmd:
            killed.append(cmd)
            with contextlib.suppress(psutil.Error):
                proc.kill()
    return killed


def test_main_job_completes_and_stops_what_it_started(tmp_path) -> None:
    workdir = tmp_path / "demo"
    try:
        out = subprocess.run(
            [sys.executable, "-m", "prodagent.demo", "--workdir", str(workdir)],
            cwd=ROOT, capture_output=True, text=True, timeout=300,
        )
    finally:  # on a timeout the demo is killed, not what it started: stop that too
        left = kill_processes_of(workdir)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    text = out.stdout
    assert "production complete: every requested event is merged" in text
    assert re.search(r"web monitor: http://127\.0\.0\.1:\d+/\n  sign in with the operator token pm_", text)
    # The table row itself, read back from the merged ROOT files (not any "5000" in the output).
    assert re.search(r"events in merged ROOT files\s*\S?\s*5000\b", text), text[-3000:]
    for error_class in ("PayloadError", "OutOfMemory", "MissingOutput", "EmptyOutput", "NoEndOfJob", "FatalError"):
        assert error_class in text
    assert not [p for p in (workdir / "agent" / "data" / "unmerged").rglob("*") if p.is_file()]
    assert left == []  # the demo stopped all it started, by itself
