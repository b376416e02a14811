"""`status` calls a frozen component stale (and fails); `stop` returns only once processes are gone."""

from __future__ import annotations

import json
import os
import signal

import psutil

from prodagent.runtime import pidfiles
from tests.agent_helpers import prodagentd, wait_until
from tests.messaging.conftest import make_agent


def _status(path) -> tuple[int, dict]:
    out = prodagentd(path, "status", "--json")
    return out.returncode, json.loads(out.stdout)


def _row(path, component: str) -> dict:
    return next(r for r in _status(path)[1]["components"] if r["component"] == component)


def test_frozen_component_is_stale_and_stop_waits_until_it_is_gone(tmp_path, sqlite_url) -> None:
    agent = make_agent(tmp_path, sqlite_url, messaging={"heartbeat_s": 0.3, "heartbeat_stale_s": 2.0})
    assert prodagentd(agent.path, "start").returncode == 0
    try:
        wait_until(lambda: _status(agent.path)[0] == 0 and _row(agent.path, "Recorder")["state"] == "alive", 30)
        pid = _row(agent.path, "Recorder")["pid"]
        os.kill(pid, signal.SIGSTOP)
        row = wait_until(lambda: (r := _row(agent.path, "Recorder"))["state"] == "stale" and r, 30,
                         what="the frozen component to be stale")
        assert row["alive"] and row["pid"] == pid and row["heartbeat_age_s"] > 2.0
        assert psutil.Process(pid).status() == psutil.STATUS_STOPPED  # the supervisor leaves it alone
        table = prodagentd(agent.path, "status")
        assert table.returncode == 1 and "stale" in table.stdout
        assert prodagentd(agent.path, "status", "--components", "Sink").returncode == 0
    finally:
        pids = [r["pid"] for r in _status(agent.path)[1]["components"]]
        stopped = prodagentd(agent.path, "stop")
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert all(pidfiles.gone(p) for p in pids)  # gone (at most a zombie for init to reap) when stop returned
    assert "stopped (pid" in stopped.stdout


def test_stop_kills_what_does_not_stop_and_returns_after_it_is_gone(tmp_path, sqlite_url) -> None:
    agent = make_agent(tmp_path, sqlite_url)
    assert prodagentd(agent.path, "start", "--components", "Recorder").returncode == 0
    try:
        marker = tmp_path / "hanging"
        agent.service.send("Work", {"key": "hang", "hang_once": str(marker)})  # a 600 s handler
        wait_until(marker.exists, 30, what="the handler to hang")
        pid = int(marker.read_text())
    finally:
        stopped = prodagentd(agent.path, "stop", "--components", "Recorder", "--timeout", "1")
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert f"killed after 1s (pid {pid})" in stopped.stdout
    assert pidfiles.gone(pid)
    code, status = _status(agent.path)
    assert code == 1 and not status["supervisor"]["alive"]  # nothing left to watch: it went too
