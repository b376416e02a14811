"""The message service on a real database: fan-out, transactions, delay, priority, dead letters."""

from __future__ import annotations

import threading
import time

import pytest
import sqlalchemy as sa

from prodagent.runtime.runner import ComponentRunner
from tests.agent_helpers import wait_until
from tests.messaging.components import effect_counts
from tests.messaging.conftest import Agent, make_agent


def test_publish_is_part_of_the_callers_transaction(agent: Agent) -> None:
    svc = agent.service

    def publish_then_fail(conn: sa.Connection) -> None:
        svc.publish(conn, "Work", {"key": "rolled-back"})
        raise RuntimeError("abort")

    with pytest.raises(RuntimeError):
        svc.tx.run(publish_then_fail)
    assert svc.queue_stats() == []
    svc.send("Work", {"key": "kept"})
    stats = svc.queue_stats()
    assert [(s["component"], s["msg_type"], s["pending"]) for s in stats] == [("Recorder", "Work", 1)]


def test_fan_out_to_every_subscriber(tmp_path, db_url) -> None:
    agent = make_agent(tmp_path, db_url)
    agent.service.declare("Sink2", ["Done"])
    copies = agent.service.send("Done", {"key": "x"})
    assert copies == 2
    pending = {s["component"]: s["pending"] for s in agent.service.queue_stats()}
    assert pending == {"Sink": 1, "Sink2": 1}


def test_message_waits_for_a_consumer_that_never_ran(agent: Agent) -> None:
    # Declared subscriptions: Recorder has never started, yet the message is kept for it.
    agent.service.send("Work", {"key": "early"})
    runner = ComponentRunner(agent.config, "Recorder")
    thread = threading.Thread(target=runner.run)
    thread.start()
    try:
        wait_until(lambda: effect_counts(agent.service.engine).get("early") == 1, 30, what="delivery")
    finally:
        runner.request_stop()
        thread.join(10)
    assert not thread.is_alive()


def test_delayed_message_is_not_delivered_early(agent: Agent) -> None:
    svc = agent.service
    pid = svc.register("Recorder")
    # Taken before the send: the message may not come out before it plus the delay,
    # however long the claims below take on a loaded machine.
    deadline = time.time() + 1.5
    svc.send("Work", {"key": "later"}, delay=1.5)
    svc.send("Work", {"key": "now"})
    first = svc.claim("Recorder", pid)
    assert [m.payload["key"] for m in first] == ["now"]
    assert svc.claim("Recorder", pid) == []
    later = wait_until(lambda: svc.claim("Recorder", pid), 10, 0.02, "the delayed message")
    assert [m.payload["key"] for m in later] == ["later"]
    assert time.time() >= deadline - 0.01


def test_higher_priority_is_delivered_first(agent: Agent) -> None:
    svc = agent.service
    pid = svc.register("Recorder")
    for i in range(5):
        svc.send("Work", {"key": f"low{i}"}, priority=0)
    svc.send("Work", {"key": "high"}, priority=10)
    svc.send("Work", {"key": "mid"}, priority=5)
    claimed = svc.claim("Recorder", pid, limit=3)
    assert [m.payload["key"] for m in claimed] == ["high", "mid", "low0"]


def test_claims_are_disjoint_and_come_back_after_the_lease(tmp_path, db_url) -> None:
    agent = make_agent(tmp_path, db_url, messaging={"lease_s": 0.5})
    svc = agent.service
    for i in range(10):
        svc.send("Work", {"key": f"k{i}"})
    a, b = svc.register("Recorder"), svc.register("Recorder")
    first = svc.claim("Recorder", a, limit=6)
    second = svc.claim("Recorder", b, limit=6)
    assert len(first) == 6 and len(second) == 4
    assert not {m.id for m in first} & {m.id for m in second}
    time.sleep(0.6)
    again = svc.claim("Recorder", b, limit=20)
    assert {m.id for m in again} == {m.id for m in first} | {m.id for m in second}
    assert all(m.deliveries == 2 for m in again)
    # The first claimer lost its lease: its late acknowledgement handles nothing.
    result = svc.handle("Recorder", a, first, lambda conn, m, out: None)
    assert result.handled == 0 and result.skipped == 6


def test_failing_handler_goes_to_dead_letters_and_others_flow(tmp_path, db_url) -> None:
    agent = make_agent(
        tmp_path, db_url, enabled=["Failing"],
        messaging={"max_deliveries": 3, "retry_backoff_s": 0.05},
    )
    svc = agent.service
    svc.send("Bad", {"why": "poison"})
    for i in range(20):
        svc.send("Good", {"key": f"g{i}"})
    runner = ComponentRunner(agent.config, "Failing")
    thread = threading.Thread(target=runner.run)
    thread.start()
    try:
        wait_until(lambda: svc.dead_letter_counts().get("Failing") == 1, 30, what="dead letter")
        counts = wait_until(lambda: (c := effect_counts(svc.engine)) and sum(v for k, v in c.items() if k != "bad") == 20 and c, 30)
    finally:
        runner.request_stop()
        thread.join(10)
    assert all(counts[f"g{i}"] == 1 for i in range(20))
    assert "bad" not in counts  # its effects were rolled back every time
    (dead,) = svc.dead_letters("Failing")
    assert dead["deliveries"] == 3 and "always fails" in dead["last_error"]
    assert svc.queue_stats() == []
    # An operator requeues it: it is delivered again (and fails again, 3 more times).
    assert svc.requeue(dead["id"])
    assert svc.dead_letter_counts() == {}
    assert [s["msg_type"] for s in svc.queue_stats()] == ["Bad"]
    assert svc.purge_dead_letters() == 0


def test_history_is_kept_and_purged(agent: Agent) -> None:
    svc = agent.service
    pid = svc.register("Recorder")
    svc.send("Work", {"key": "h"})
    msgs = svc.claim("Recorder", pid)
    svc.handle("Recorder", pid, msgs, lambda conn, m, out: None)
    from prodagent.db.schema import ms_history

    with svc.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(ms_history)).scalar() == 1
    assert svc.purge_history(older_than_s=3600) == 0
    assert svc.purge_history(older_than_s=-1) == 1


def test_a_consumer_takes_the_next_batch_while_another_holds_the_first(tmp_path, make_mysql_db) -> None:
    # MariaDB only: SQLite serialises consumers. The second consumer neither waits for the
    # first one's locks nor gets any of its messages, and still takes its batch in order.
    agent = make_agent(tmp_path, make_mysql_db())
    svc = agent.service
    for i in range(30):
        svc.send("Work", {"key": f"k{i:02}"})
    svc.send("Work", {"key": "urgent"}, priority=9)
    a, b = svc.register("Recorder"), svc.register("Recorder")
    holding, release = threading.Event(), threading.Event()
    seen_a: list[str] = []
    seen_b: list[str] = []

    def slow(conn: sa.Connection, message, outbox) -> None:  # noqa: ANN001
        seen_a.append(message.payload["key"])
        holding.set()
        release.wait(30)

    first = threading.Thread(target=lambda: svc.consume("Recorder", a, slow, limit=10))
    first.start()
    assert holding.wait(10)
    second = threading.Thread(
        target=lambda: svc.consume("Recorder", b, lambda conn, m, out: seen_b.append(m.payload["key"]), limit=10)
    )
    second.start()
    second.join(10)
    finished_while_held = not second.is_alive()
    release.set()
    first.join(10)
    second.join(10)
    assert finished_while_held
    assert seen_a == ["urgent"] + [f"k{i:02}" for i in range(9)]
    assert seen_b == [f"k{i:02}" for i in range(9, 19)]
    assert sum(s["pending"] for s in svc.queue_stats()) == 11
    svc.engine.dispose()
