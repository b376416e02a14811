"""`prodAgentd` on real daemons: start, status, stop, a killed component, bad configs, two agents."""

from __future__ import annotations

import json
import os
import signal
import time

import yaml

from prodagent.runtime import pidfiles
from tests.agent_helpers import prodagentd, wait_until, write_config
from tests.messaging.components import effect_counts
from tests.messaging.conftest import make_agent


def _status(path) -> tuple[int, dict]:
    out = prodagentd(path, "status", "--json")
    return out.returncode, json.loads(out.stdout)


def _row(path, component: str) -> dict:
    return next(r for r in _status(path)[1]["components"] if r["component"] == component)


def test_start_status_kill_stop(tmp_path, db_url) -> None:
    agent = make_agent(tmp_path, db_url)
    started = prodagentd(agent.path, "start")
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        assert "supervisor" in started.stdout
        code, status = _status(agent.path)
        assert code == 0 and status["healthy"] and status["supervisor"]["alive"]
        rows = {r["component"]: r for r in status["components"]}
        assert set(rows) == {"Recorder", "Sink"} and all(r["alive"] for r in rows.values())
        pidfile = agent.config.workdir / "run" / "Recorder.pid"
        assert int(pidfile.read_text()) == rows["Recorder"]["pid"]
        wait_until(lambda: _row(agent.path, "Recorder")["heartbeat_age_s"] is not None, 30)

        # Work flows through the daemons.
        agent.service.send("Work", {"key": "via-daemon", "reply": True})
        wait_until(lambda: effect_counts(agent.service.engine).get("done-via-daemon") == 1, 30)

        # A component killed by hand is brought back by the supervisor, and status says so.
        os.kill(rows["Sink"]["pid"], signal.SIGKILL)
        sink = wait_until(lambda: (r := _row(agent.path, "Sink"))["restarts"] == 1 and r["alive"] and r, 30,
                          what="the supervisor to restart Sink")
        assert sink["pid"] != rows["Sink"]["pid"] and sink["last_exit_at"] is not None
        assert "1" in prodagentd(agent.path, "status").stdout.split("Sink", 1)[1].split("\n")[0]

        # A component stopped by hand is not brought back; messages for it wait for it.
        stopped_one = prodagentd(agent.path, "stop", "--components", "Sink")
        assert stopped_one.returncode == 0 and "stopped" in stopped_one.stdout
        time.sleep(1.5)  # several supervisor rounds
        code, status = _status(agent.path)
        sink = next(r for r in status["components"] if r["component"] == "Sink")
        assert code == 1 and not sink["alive"] and not sink["supervised"] and status["supervisor"]["alive"]
        assert prodagentd(agent.path, "status", "--components", "Recorder").returncode == 0
        agent.service.send("Done", {"key": "while-dead"})
        time.sleep(0.3)
        assert _row(agent.path, "Sink")["pending"] == 1
        assert prodagentd(agent.path, "start", "--components", "Sink").returncode == 0
        wait_until(lambda: effect_counts(agent.service.engine).get("done-while-dead") == 1, 30)

        # Without a supervisor (killed), a killed component stays dead: its pid file is stale.
        supervisor = status["supervisor"]["pid"]
        os.kill(supervisor, signal.SIGKILL)
        os.kill(_row(agent.path, "Sink")["pid"], signal.SIGKILL)
        wait_until(lambda: _status(agent.path)[0] == 1 and not _row(agent.path, "Sink")["alive"], 20)
        code, status = _status(agent.path)
        sink = next(r for r in status["components"] if r["component"] == "Sink")
        assert code == 1 and not sink["alive"] and sink["stale_pid_file"] and not status["supervisor"]["alive"]
        table = prodagentd(agent.path, "status")
        assert "stale pid file" in table.stdout and "supervisor: not running" in table.stdout
        assert table.returncode == 1
        restarted = prodagentd(agent.path, "start", "--components", "Sink")
        assert restarted.returncode == 0 and "stale pid file" in restarted.stdout
        assert _status(agent.path)[1]["supervisor"]["pid"] not in (None, supervisor)
    finally:
        pids = [r["pid"] for r in _status(agent.path)[1]["components"]] + [_status(agent.path)[1]["supervisor"]["pid"]]
        stopped = prodagentd(agent.path, "stop")
    assert stopped.returncode == 0
    assert "stopped" in stopped.stdout
    code, status = _status(agent.path)
    assert code == 1 and not any(r["alive"] for r in status["components"]) and not status["supervisor"]["alive"]
    assert all(pidfiles.gone(pid) for pid in pids if pid)  # `stop` returned after they were gone
    assert not (agent.config.workdir / "run" / "Recorder.pid").exists()
    assert (agent.config.workdir / "logs" / "Recorder.log").stat().st_size > 0
    assert "restarted" in (agent.config.workdir / "logs" / "supervisor.log").read_text()


def test_bad_config_is_refused_naming_the_key(tmp_path) -> None:
    bad = write_config(tmp_path / "bad.yaml", {"agent": {"name": "x", "wrokdir": "/tmp"}, "messaging": {"batch_size": "many"}})
    out = prodagentd(bad, "status")
    assert out.returncode != 0
    assert "agent.wrokdir: unknown key" in out.stderr
    assert "messaging.batch_size" in out.stderr and str(bad) in out.stderr
    broken = tmp_path / "broken.yaml"
    broken.write_text("agent: [unclosed\n")
    out = prodagentd(broken, "start")
    assert out.returncode != 0 and "invalid YAML" in out.stderr
    missing = prodagentd(tmp_path / "nope.yaml", "status")
    assert missing.returncode != 0 and "cannot read configuration" in missing.stderr
    unknown = write_config(tmp_path / "u.yaml", {"components": {"enabled": ["NoSuchThing"]}})
    out = prodagentd(unknown, "start")
    assert out.returncode != 0 and "unknown component 'NoSuchThing'" in out.stderr


def test_two_agents_side_by_side_on_one_database(tmp_path, db_url) -> None:
    a = make_agent(tmp_path, db_url, name="alpha")
    b = make_agent(tmp_path, db_url, name="beta")
    assert prodagentd(a.path, "start", "--components", "Recorder").returncode == 0
    assert prodagentd(b.path, "start", "--components", "Sink").returncode == 0
    try:
        a.service.send("Work", {"key": "for-alpha"})
        b.service.send("Work", {"key": "for-beta"})  # beta runs no Recorder: it must wait
        wait_until(lambda: effect_counts(a.service.engine).get("for-alpha") == 1, 30)
        time.sleep(0.5)
        assert "for-beta" not in effect_counts(a.service.engine)
        assert [s["pending"] for s in b.service.queue_stats()] == [1]
        assert a.service.queue_stats() == []
        assert (a.config.workdir / "run" / "Recorder.pid").exists()
        assert not (b.config.workdir / "run" / "Recorder.pid").exists()
        assert _status(b.path)[1]["agent"] == "beta"
        # Each agent has a supervisor of its own, watching its own components.
        sups = [_status(x.path)[1]["supervisor"] for x in (a, b)]
        assert all(s["alive"] for s in sups) and sups[0]["pid"] != sups[1]["pid"]
    finally:
        prodagentd(a.path, "stop")
        prodagentd(b.path, "stop")


def test_dead_letter_commands(tmp_path, sqlite_url) -> None:
    agent = make_agent(tmp_path, sqlite_url, enabled=["Failing"], messaging={"max_deliveries": 1})
    svc = agent.service
    svc.send("Bad", {})
    pid = svc.register("Failing")
    from prodagent.components.registry import component_class

    comp = component_class(agent.config, "Failing")(agent.config, svc)
    svc.handle("Failing", pid, svc.claim("Failing", pid), comp.dispatch)
    listed = prodagentd(agent.path, "messages", "dead-letters", "--json")
    (row,) = json.loads(listed.stdout)
    assert row["msg_type"] == "Bad" and "always fails" in row["last_error"]
    assert "always fails" in prodagentd(agent.path, "messages", "dead-letters").stdout
    assert prodagentd(agent.path, "messages", "requeue", "999999").returncode != 0
    assert prodagentd(agent.path, "messages", "requeue", str(row["id"])).returncode == 0
    assert [s["msg_type"] for s in svc.queue_stats()] == ["Bad"]
    svc.handle("Failing", pid, svc.claim("Failing", pid), comp.dispatch)
    out = prodagentd(agent.path, "messages", "purge")
    assert "dropped 1 dead letter" in out.stdout
    assert svc.dead_letters() == []
    assert yaml.safe_load(agent.path.read_text())["agent"]["name"] == "t1"
