"""One agent name, one running agent: a second agent under a running agent's name is refused."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time

import pytest
import sqlalchemy as sa
import yaml

from prodagent.config import load_config
from prodagent.db.schema import ms_process
from prodagent.runtime.liveness import AgentNameInUse, check_name_free, foreign_holders
from tests.agent_helpers import env, prodagentd, wait_until
from tests.messaging.components import effect_counts
from tests.messaging.conftest import make_agent


def _status(path) -> tuple[int, dict]:
    out = prodagentd(path, "status", "--json")
    return out.returncode, json.loads(out.stdout)


def test_second_agent_under_a_running_agents_name_is_refused(tmp_path, make_mysql_db) -> None:
    first = make_agent(tmp_path, make_mysql_db())
    assert prodagentd(first.path, "start").returncode == 0
    try:
        code, before = _status(first.path)
        assert code == 0
        wait_until(lambda: all(r["heartbeat_age_s"] is not None for r in _status(first.path)[1]["components"]), 30)
        pids = {r["component"]: r["pid"] for r in _status(first.path)[1]["components"]}

        # A copied config: same agent.name, same database, its own work directory.
        raw = yaml.safe_load(first.path.read_text())
        raw["agent"]["workdir"] = str(tmp_path / "copy")
        copy = tmp_path / "copy.yaml"
        copy.write_text(yaml.safe_dump(raw))
        out = prodagentd(copy, "start")
        assert out.returncode != 0, out.stdout
        text = " ".join(out.stdout.split())
        assert "REFUSED" in text and f"agent name '{first.config.agent.name}'" in text
        assert f"host {socket.gethostname()}" in text and f"pid {pids['Recorder']}" in text
        assert "heartbeat" in text and "s ago" in text
        copy_config = load_config(copy)
        assert not list((copy_config.workdir / "run").glob("*.pid"))  # nothing of it runs, no supervisor

        # Foreground too: `prodAgentd run` exits non-zero naming the holder.
        fg = subprocess.run([sys.executable, "-m", "prodagent.cli.daemon_cli", "--config", str(copy), "run", "Sink"],
                            env=env(), capture_output=True, text=True, timeout=120)
        assert fg.returncode != 0 and f"pid {pids['Sink']}" in fg.stderr

        # The first agent runs on, unchanged, and does its work.
        code, after = _status(first.path)
        assert code == 0 and {r["component"]: r["pid"] for r in after["components"]} == pids
        first.service.send("Work", {"key": "still-works", "reply": True})
        wait_until(lambda: effect_counts(first.service.engine).get("done-still-works") == 1, 30)
    finally:
        prodagentd(first.path, "stop")

    # Once the first agent is stopped, the name is free: the copy may start.
    try:
        out = prodagentd(copy, "start", "--components", "Recorder")
        assert out.returncode == 0, out.stdout + out.stderr
    finally:
        prodagentd(copy, "stop")
        shutil.rmtree(tmp_path / "copy", ignore_errors=True)


@pytest.mark.parametrize("host, age, pid_alive, expected", [
    ("elsewhere.example", 1.0, False, True),      # another host, fresh heartbeat: alive elsewhere
    ("elsewhere.example", 120.0, False, False),   # another host, stale heartbeat: gone
    ("here", 1.0, False, False),                  # this host, pid gone: a predecessor that died
    ("here", 1.0, True, True),                    # this host, live pid of another work directory
])
def test_foreign_holders_rules(tmp_path, sqlite_url, host, age, pid_alive, expected) -> None:
    agent = make_agent(tmp_path, sqlite_url)
    other = None
    if pid_alive:
        other_cfg = tmp_path / "other.yaml"
        shutil.copy(agent.path, other_cfg)
        raw = yaml.safe_load(other_cfg.read_text())
        raw["agent"]["workdir"] = str(tmp_path / "other")
        other_cfg.write_text(yaml.safe_dump(raw))
        other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "--config", str(other_cfg)])
    try:
        pid = other.pid if other else 999_999
        now = time.time()
        with agent.service.engine.begin() as conn:
            conn.execute(sa.insert(ms_process).values(
                agent=agent.config.agent.name, component="Recorder",
                host=socket.gethostname() if host == "here" else host, pid=pid,
                started_at=now, heartbeat_at=now - age, handled=0))
        with agent.service.engine.connect() as conn:
            holders = foreign_holders(conn, agent.config, "Recorder")
        assert bool(holders) is expected
        if expected:
            assert holders[0].pid == pid and holders[0].heartbeat_age_s >= age - 0.5
    finally:
        if other:
            other.kill()
            other.wait()


def test_two_copies_past_the_first_check_at_once_the_later_registered_gives_way(tmp_path, db_url) -> None:
    """Both copies passed the check before either registered: after registering, each checks the
    rows registered before its own, so exactly one (the one registered second) is refused."""
    agent = make_agent(tmp_path, db_url)
    now = time.time()
    ids = []
    with agent.service.engine.begin() as conn:
        for host in ("copy-a.example", "copy-b.example"):
            ids.append(conn.execute(sa.insert(ms_process).values(
                agent=agent.config.agent.name, component="Recorder", host=host, pid=4242,
                started_at=now, heartbeat_at=now, handled=0)).inserted_primary_key[0])
    first, second = ids
    check_name_free(agent.service.tx, agent.config, "Recorder", registered_as=first)  # goes on
    with pytest.raises(AgentNameInUse, match="host copy-a.example"):
        check_name_free(agent.service.tx, agent.config, "Recorder", registered_as=second)
