"""Real consumer processes: crashes, concurrency, database connections killed, graceful stop."""

from __future__ import annotations

import contextlib
import os
import signal
import time

import psutil
import pytest
import sqlalchemy as sa

from prodagent.db.schema import ms_process
from prodagent.messaging.message import Outgoing
from tests.agent_helpers import run_component, wait_until
from tests.messaging.components import effect_counts
from tests.messaging.conftest import Agent, make_agent


def _publish_work(agent: Agent, n: int, prefix: str = "k", **extra) -> None:
    batch = [Outgoing("Work", {"key": f"{prefix}{i}", **extra}) for i in range(n)]
    for start in range(0, n, 5000):
        agent.service.tx.run(lambda conn, b=batch[start:start + 5000]: agent.service.publish_many(conn, b))


def _stop(procs) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(15)
        except Exception:  # noqa: BLE001
            p.kill()


def _state(agent: Agent, procs, tmp_path) -> str:
    """What a failure report needs: the queues, the exit codes and the end of each log."""
    lines = [f"queues: {agent.service.queue_stats()}", f"exit codes: {[p.poll() for p in procs]}"]
    for log in sorted(tmp_path.glob("*.log")):
        lines.append(f"--- {log.name}")
        lines += log.read_text(errors="replace").splitlines()[-60:]
    return "\n".join(lines)


def test_consumer_killed_mid_handler_redelivers_with_single_effect(agent: Agent, tmp_path) -> None:
    marker = tmp_path / "inside-handler"
    agent.service.send("Work", {"key": "victim", "hang_once": str(marker)})
    proc = run_component(agent.path, "Recorder", tmp_path / "rec.log")
    try:
        wait_until(marker.exists, 60, what="the handler to start")
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        # The handler inserted its effect before hanging, but never committed it.
        assert effect_counts(agent.service.engine).get("victim") is None
        # A restarted consumer frees the dead process's claim at once (no lease wait).
        proc = run_component(agent.path, "Recorder", tmp_path / "rec.log")
        wait_until(lambda: effect_counts(agent.service.engine).get("victim"), 60, what="redelivery")
        time.sleep(0.5)
        assert effect_counts(agent.service.engine)["victim"] == 1
        assert agent.service.queue_stats() == []
        assert agent.service.dead_letter_counts() == {}
    finally:
        _stop([proc])


def test_four_consumers_handle_20000_messages_exactly_once(make_mysql_db, tmp_path) -> None:
    agent = make_agent(tmp_path, make_mysql_db())
    n = 20_000
    _publish_work(agent, n, reply=True)
    logs = [tmp_path / f"rec{i}.log" for i in range(4)]
    procs = [run_component(agent.path, "Recorder", log) for log in logs]
    procs.append(run_component(agent.path, "Sink", tmp_path / "sink.log"))
    try:
        wait_until(lambda: agent.service.queue_stats() == [], 300, 0.5, "the queues to drain")
    finally:
        _stop(procs)
    counts = effect_counts(agent.service.engine)
    assert len([k for k in counts if not k.startswith("done-")]) == n
    assert set(counts.values()) == {1}
    assert sum(1 for k in counts if k.startswith("done-")) == n
    assert agent.service.dead_letter_counts() == {}
    with agent.service.engine.connect() as conn:
        handled = conn.execute(
            sa.select(ms_process.c.pid, ms_process.c.handled).where(ms_process.c.component == "Recorder")
        ).all()
    assert sum(h for _, h in handled) == n
    assert sum(1 for _, h in handled if h > 0) >= 2  # the work was really shared
    for log in logs:
        text = log.read_text()
        assert "handler for" not in text, text[-2000:]  # no error ever reached a handler


def test_consumers_survive_their_connections_being_killed(make_mysql_db, tmp_path) -> None:
    url = make_mysql_db()
    agent = make_agent(tmp_path, url)
    dbname = sa.make_url(url).database
    procs = [run_component(agent.path, "Recorder", tmp_path / f"r{i}.log") for i in range(2)]
    procs.append(run_component(agent.path, "Sink", tmp_path / "sink.log"))
    admin = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        total = 0
        for round_ in range(4):
            _publish_work(agent, 1500, prefix=f"r{round_}-", reply=True)
            total += 1500
            time.sleep(0.3)
            with admin.connect() as conn:
                me = conn.execute(sa.text("SELECT CONNECTION_ID()")).scalar()
                ids = conn.execute(
                    sa.text("SELECT id FROM information_schema.processlist WHERE db = :db AND id <> :me"),
                    {"db": dbname, "me": me},
                ).scalars().all()
                for cid in ids:
                    with contextlib.suppress(sa.exc.DBAPIError):  # already gone
                        conn.execute(sa.text(f"KILL {int(cid)}"))
            agent.service.engine.dispose()
        try:
            wait_until(lambda: agent.service.queue_stats() == [], 120, 0.5, "the queues to drain")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{_state(agent, procs, tmp_path)}") from None
    finally:
        _stop(procs)
        admin.dispose()
    assert all(p.returncode == 0 for p in procs), _state(agent, procs, tmp_path)  # nobody died of it
    counts = effect_counts(agent.service.engine)
    assert len(counts) == 2 * total
    assert set(counts.values()) == {1}


def test_sigterm_finishes_the_batch_and_exits_quickly(agent: Agent, tmp_path) -> None:
    _publish_work(agent, 30, sleep=0.05)
    proc = run_component(agent.path, "Recorder", tmp_path / "rec.log")
    wait_until(lambda: effect_counts(agent.service.engine), 60, 0.05, "work to start")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(5) == 0
    counts = effect_counts(agent.service.engine)
    pending = sum(s["pending"] for s in agent.service.queue_stats())
    assert sum(counts.values()) + pending == 30  # each message either done once or still queued
    assert set(counts.values()) == {1}


def test_idle_component_is_quiet(db_url: str, tmp_path) -> None:
    # The documented defaults for polling and heartbeats, not the fast test settings.
    agent = make_agent(tmp_path, db_url, messaging={"poll_max_s": 0.5, "heartbeat_s": 5})
    proc = run_component(agent.path, "Recorder", tmp_path / "rec.log")
    try:
        wait_until(lambda: agent.service.tx.run(
            lambda c: c.execute(sa.select(sa.func.count()).select_from(ms_process)).scalar()), 60)
        time.sleep(2)  # past start-up
        p = psutil.Process(proc.pid)
        before = p.cpu_times()
        wall = 6.0
        time.sleep(wall)
        after = p.cpu_times()
    finally:
        _stop([proc])
    used = (after.user + after.system) - (before.user + before.system)
    assert used / wall < 0.01, f"idle component used {used / wall:.2%} CPU"


@pytest.mark.parametrize("victim", ["Recorder"])
def test_restart_after_kill_keeps_working(agent: Agent, tmp_path, victim: str) -> None:
    proc = run_component(agent.path, victim, tmp_path / "a.log")
    _publish_work(agent, 200)
    wait_until(lambda: len(effect_counts(agent.service.engine)) >= 50, 60, 0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    _publish_work(agent, 200, prefix="second")
    proc = run_component(agent.path, victim, tmp_path / "b.log")
    try:
        wait_until(lambda: agent.service.queue_stats() == [], 60, 0.2, "the queue to drain")
    finally:
        _stop([proc])
    counts = effect_counts(agent.service.engine)
    assert len(counts) == 400 and set(counts.values()) == {1}


def test_message_that_keeps_killing_its_consumer_is_dead_lettered(tmp_path, db_url) -> None:
    agent = make_agent(tmp_path, db_url, enabled=["Crasher"], messaging={"max_deliveries": 3})
    agent.service.send("Die", {}, priority=5)
    agent.service.send("Work", {"key": "after"})
    deaths = 0
    proc = run_component(agent.path, "Crasher", tmp_path / "c.log")
    try:
        deadline = time.monotonic() + 120
        while not effect_counts(agent.service.engine).get("after") and time.monotonic() < deadline:
            if proc.poll() is not None:
                assert proc.returncode == -9
                deaths += 1
                proc = run_component(agent.path, "Crasher", tmp_path / "c.log")
            time.sleep(0.1)
    finally:
        _stop([proc])
    # The first death was in a batch of two: nobody is blamed, both are retried one at a time.
    # Each later death is charged to the killer alone; the third charge dead-letters it.
    assert deaths == 4
    (dead,) = agent.service.dead_letters("Crasher")
    assert dead["msg_type"] == "Die" and "without acknowledgement" in dead["last_error"]
    assert effect_counts(agent.service.engine) == {"after": 1}  # the crashing handler left nothing
