"""The main job can be interrupted: Ctrl-C, SIGTERM and a closed terminal stop everything it started."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from prodagent.runtime import pidfiles
from tests.agent_helpers import ROOT, env, wait_until

COMPONENTS = ["ProdMgrInterface", "ResourceMonitor", "JobCreator", "JobSubmitter", "JobTracker",
              "ErrorHandler", "MergeSensor", "Cleanup", "supervisor"]


def _under(workdir: Path) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        if proc.info["status"] != psutil.STATUS_ZOMBIE and any(str(workdir) in a for a in proc.info["cmdline"] or []):
            found.append(proc)
    return found


def _pids(workdir: Path) -> dict[str, int]:
    run = workdir / "agent" / "run"
    found = {}
    for name in COMPONENTS:
        with contextlib.suppress(OSError, ValueError):
            found[name] = int((run / f"{name}.pid").read_text())
    return found


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP], ids=lambda s: s.name)
def test_demo_stops_everything_on_a_signal(tmp_path, sig) -> None:
    workdir = tmp_path / "demo"
    log = tmp_path / "demo.out"
    with open(log, "wb") as out:
        demo = subprocess.Popen([sys.executable, "-m", "prodagent.demo", "--workdir", str(workdir), "--timeout", "900"],
                                cwd=ROOT, env=env(), stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_until(lambda: "submitted request" in log.read_text() and len(_pids(workdir)) == len(COMPONENTS), 240,
                   0.5, "the demo's components to be up and its request submitted")
        pids = _pids(workdir)
        manager = [p.pid for p in _under(workdir) if "serve" in p.cmdline()]
        assert len(manager) == 1 and demo.poll() is None
        if sig == signal.SIGTERM:
            demo.send_signal(sig)
        else:  # what a terminal does: the whole foreground process group
            os.killpg(demo.pid, sig)
        code = demo.wait(180)
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
            demo.wait()
    text = log.read_text()
    assert code == 128 + sig, text[-3000:]
    assert f"interrupted by {sig.name}" in text and "stopped:" in text
    assert f"ProdManager (pid {manager[0]}) stopped" in text
    for name, pid in pids.items():
        assert pidfiles.gone(pid), f"{name} (pid {pid}) survived"
        assert name in text.split("stopped:", 1)[1] or name == "supervisor" and "supervisor" in text
    assert pidfiles.gone(manager[0])
    assert [" ".join(p.cmdline()) for p in _under(workdir)] == []  # no payload, launcher or daemon left
