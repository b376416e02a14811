"""Notifications end to end against a real SMTP server and a real webhook receiver: completion
mails and calls once; a receiver down then up gets the webhook once after retries; a sender
SIGKILLed mid-delivery loses nothing; operator rules, repeats, 410, and the operator's view."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
import yaml
from prometheus_client.parser import text_string_to_metric_families

from prodmanager import lifecycle
from prodmanager.models import ProgressReport, ReleaseRequest
from prodmanager.notify.config import NotifyConfig
from prodmanager.notify.sender import Sender
from prodmanager.notify.service import NotificationService
from prodmanager.notify.signing import new_secret
from prodmanager.states import RequestState
from tests.prodmanager.conftest import (
    WORKFLOWS,
    Env,
    Server,
    child_env,
    free_port,
    mc_workflow,
    submit,
)
from tests.prodmanager.notify_receivers import WebhookReceiver, start_smtp
from tests.prodmanager.test_pull import acquire, complete, out, register

OWNER_MAIL = "alice@example.org"
OPS_MAIL = "ops@example.org"


@pytest.fixture
def smtp() -> Iterator[tuple[int, object]]:
    port = free_port()
    controller, sink = start_smtp(port)
    yield port, sink
    controller.stop()


def config(smtp_port: int, hook_url: str, secret: str, **extra: object) -> dict[str, object]:
    doc: dict[str, object] = {
        "smtp": {"host": "127.0.0.1", "port": smtp_port, "timeout_s": 5},
        "webhook_secrets": {hook_url: secret},
        "rules": [
            {"events": ["failed"], "owners": ["alice"], "email": [OPS_MAIL]},
            {"events": ["completed"], "owner": True},  # alice's address from owner_email
        ],
        "owner_email": {"alice": OWNER_MAIL},
        "monitor_url": "https://pm.example.org/monitor",
        "retry_schedule_s": [0, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2],
        "jitter": 0.1,
        "poll_s": 0.1,
        "claim_s": 1.0,
        "http_timeout_s": 5,
    }
    doc.update(extra)
    return doc


def finish_request(
    env: Env, hook_url: str, name: str = "notified", emails: tuple[str, ...] = (OWNER_MAIL,)
) -> int:
    """A request with a notify list, run to completion by one agent."""
    notify = {"email": list(emails), "webhooks": [hook_url]}
    rid = submit(env, "alice", mc_workflow(name, 20, 10, notify=notify, merge={"enabled": False}))
    register(env)
    for a in acquire(env, jobs=10):
        complete(env, a, files=[out(a)])
    return rid


def until(check: Callable[[], bool], step: Callable[[], object], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        step()
        time.sleep(0.05)


def test_completion_mails_the_owner_and_calls_the_webhook_once(env: Env, smtp) -> None:
    smtp_port, sink = smtp
    secret, port = new_secret(), free_port()
    hook = f"http://127.0.0.1:{port}/hook"
    receiver = WebhookReceiver(secret)
    receiver.start(port)
    sender = Sender(env.db, NotifyConfig.model_validate(config(smtp_port, hook, secret)))
    try:
        rid = finish_request(env, hook)
        until(lambda: len(receiver.received) >= 1 and sink.to(OWNER_MAIL), lambda: sender.tick())
        for _ in range(5):
            sender.tick()
    finally:
        sender.close()
        receiver.stop()
    assert len(receiver.received) == 1
    call = receiver.received[0]
    assert call.signature_ok
    assert call.body["type"] == "request.completed"
    assert call.body["data"]["request_id"] == rid
    assert call.body["data"]["events"]["produced"] == 20
    assert call.body["data"]["link"] == f"https://pm.example.org/monitor/requests/{rid}"
    mails = sink.to(OWNER_MAIL)
    assert len(mails) == 1
    assert "completed" in mails[0]["Subject"]
    text = mails[0].get_payload()
    assert "produced  20" in text and "/MinBias/notified-v1/GEN" in text
    assert "prodrequest show" in text
    assert not sink.to(OPS_MAIL), "the operator rule is for failures only"


def test_receiver_down_then_up_gets_it_once_and_attempts_are_listed(
    env: Env, smtp, server: Server
) -> None:
    smtp_port, _sink = smtp
    secret, port = new_secret(), free_port()
    hook = f"http://127.0.0.1:{port}/hook"
    sender = Sender(env.db, NotifyConfig.model_validate(config(smtp_port, hook, secret)))
    receiver = WebhookReceiver(secret)
    service = NotificationService(env.db)
    ops = env.who("ops")
    try:
        rid = finish_request(env, hook)
        [note] = service.list(ops, request_id=rid)

        def failed_attempts() -> int:
            hooks = [d for d in service.show(ops, note.id).delivery_list if d.channel == "webhook"]
            return sum(not a.ok for a in hooks[0].attempt_log) if hooks else 0

        until(lambda: failed_attempts() >= 3, lambda: sender.tick())  # nobody listens
        receiver.start(port)
        until(lambda: len(receiver.received) >= 1, lambda: sender.tick())
        for _ in range(5):
            sender.tick()
            time.sleep(0.1)
    finally:
        sender.close()
        receiver.stop()
    assert [r.msg_id for r in receiver.received] == [receiver.received[0].msg_id]
    assert receiver.received[0].signature_ok
    # The operator's view over HTTP: every attempt, the failures first.
    headers = {"Authorization": f"Bearer {env.tokens['ops']}"}
    shown = httpx.get(f"{server.url}/api/v1/notifications/{note.id}", headers=headers).json()
    [hook_delivery] = [d for d in shown["delivery_list"] if d["channel"] == "webhook"]
    assert hook_delivery["state"] == "delivered"
    assert hook_delivery["message_id"] == receiver.received[0].msg_id
    oks = [a["ok"] for a in hook_delivery["attempt_log"]]
    assert oks[-1] is True and oks.count(False) >= 3 and oks.count(True) == 1
    requester = {"Authorization": f"Bearer {env.tokens['alice']}"}
    assert httpx.get(f"{server.url}/api/v1/notifications", headers=requester).status_code == 403
    # Redeliver on demand: the same message id again.
    again = httpx.post(
        f"{server.url}/api/v1/notifications/{note.id}/redeliver?everything=true", headers=headers
    )
    assert again.status_code == 200
    assert {d["state"] for d in again.json()["delivery_list"]} == {"pending"}
    # The counters on /metrics are the attempts recorded in the database.
    assert httpx.get(f"{server.url}/metrics").status_code == 401
    text = httpx.get(f"{server.url}/metrics", headers=headers).text
    found = {
        (s.labels["channel"], s.labels["result"]): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "prodmanager_notification_attempts_total"
    }
    assert found[("webhook", "sent")] == 1 and found[("webhook", "failed")] == oks.count(False)
    assert found[("email", "sent")] == 1


def test_gone_endpoint_stops_and_repeats_are_suppressed(env: Env, smtp) -> None:
    smtp_port, sink = smtp
    secret, port = new_secret(), free_port()
    hook = f"http://127.0.0.1:{port}/hook"
    receiver = WebhookReceiver(secret, status=410)
    receiver.start(port)
    sender = Sender(env.db, NotifyConfig.model_validate(config(smtp_port, hook, secret)))
    service, ops = NotificationService(env.db), env.who("ops")
    try:
        rid = submit(
            env, "alice", mc_workflow("paused-twice", 20, 10, notify={"email": [OWNER_MAIL],
                                                                      "webhooks": [hook]})
        )
        def system_pause(conn: sa.Connection, state: str) -> None:
            now = time.time()
            lifecycle.transition(conn, rid, state, RequestState.PAUSED, lifecycle.SYSTEM, "disk full", now)

        env.db.transaction(lambda c: system_pause(c, "new"))
        env.requests.resume(env.who("ops"), rid)
        env.db.transaction(lambda c: system_pause(c, "new"))
        until(lambda: len(service.list(ops, request_id=rid)) == 2, lambda: sender.tick())
        for _ in range(10):
            sender.tick()
            time.sleep(0.05)
    finally:
        sender.close()
        receiver.stop()
    notes = service.list(ops, request_id=rid)
    assert {n.event for n in notes} == {"attention"}
    states = sorted(d.state for n in notes for d in service.show(ops, n.id).delivery_list)
    # the first pause: mail delivered, webhook gone after one 410; the second: both suppressed
    assert states == ["delivered", "gone", "suppressed", "suppressed"]
    assert len(receiver.received) == 1
    assert len(sink.to(OWNER_MAIL)) == 1
    assert "prodrequest resume" in sink.to(OWNER_MAIL)[0].get_payload()


def test_sender_killed_mid_delivery_loses_nothing(env: Env, smtp, tmp_path: Path) -> None:
    smtp_port, sink = smtp
    secret, port = new_secret(), free_port()
    hook = f"http://127.0.0.1:{port}/hook"
    receiver = WebhookReceiver(secret)
    receiver.hold = threading.Event()
    receiver.start(port)
    cfg = tmp_path / "notify.yaml"
    cfg.write_text(yaml.safe_dump(config(smtp_port, hook, secret)))
    cmd = [sys.executable, "-m", "prodmanager", "notify", "--db", env.url, "--config", str(cfg),
           "--log-level", "warning"]
    first = subprocess.Popen(cmd, env=child_env())
    second = None
    try:
        # The state change, while the sender runs; the owner's mail comes from the owner rule.
        rid = finish_request(env, hook, emails=())
        assert receiver.arrived.wait(20), "the sender never called the webhook"
        first.send_signal(signal.SIGKILL)  # it waits for the receiver's answer: killed mid-call
        first.wait(10)
        receiver.hold.set()
        second = subprocess.Popen(cmd, env=child_env())
        service, ops = NotificationService(env.db), env.who("ops")

        def delivered() -> bool:
            [note] = service.list(ops, request_id=rid)
            return note.deliveries == {"delivered": 2}

        until(delivered, lambda: None, timeout=30)
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                proc.wait(10)
        receiver.stop()
    ids = {r.msg_id for r in receiver.received}
    assert len(ids) == 1, "a retry after a crash carries the same webhook-id"
    assert all(r.signature_ok for r in receiver.received)
    assert len(sink.to(OWNER_MAIL)) >= 1


def test_scans_find_stalled_requests_and_jobs_waiting_for_an_operator(env: Env) -> None:
    rid = submit(env, "alice", mc_workflow("stuck", 20, 10, notify={"email": [OWNER_MAIL]}))
    register(env)
    held = acquire(env, jobs=2)
    env.pull.report(
        env.who("agent1"), "a1", held[0].allocation_id,
        ProgressReport(lease_token=held[0].lease_token, events_done=0, job_state="paused"),
    )
    cfg = NotifyConfig.model_validate({"stall_after_s": 3600, "scan_every_s": 1})
    sender = Sender(env.db, cfg)
    service, ops = NotificationService(env.db), env.who("ops")
    try:
        assert sender.scan(time.time()) == 1  # the paused job; not stalled yet
        assert sender.scan(time.time()) == 0  # the same cause again adds nothing
        later = time.time() + 2 * 3600
        assert sender.scan(later) == 1  # no progress for two hours
        assert sender.scan(later + 60) == 0
    finally:
        sender.close()
    notes = service.list(ops, request_id=rid)
    assert [n.event for n in notes] == ["attention", "attention"]
    why = sorted(n.why for n in notes)
    assert "1 allocation(s) hold jobs paused for an operator" in why[0]
    assert why[1].startswith("no progress for 2.0 h")
    paused = next(n for n in notes if "paused" in n.why)
    assert "prodagent jobs list --state paused,exhausted" in service.show(ops, paused.id).facts["act"]


def test_the_shipped_example_configuration_is_valid() -> None:
    loaded = NotifyConfig.load(WORKFLOWS.parent / "prodmanager-notify.yaml")
    assert loaded.retry_schedule_s[0] == 0 and len(loaded.retry_schedule_s) == 10
    with pytest.raises(ValueError, match="whsec_"):
        NotifyConfig.model_validate({"signing_key": "not-a-secret"})


def test_failure_mails_the_operator_rule_with_classes_and_the_command(env: Env, smtp) -> None:
    smtp_port, sink = smtp
    hook = "http://127.0.0.1:9/never-called"  # failed is not among this request's events
    notify = {"webhooks": [hook], "events": ["completed"]}
    rid = submit(env, "alice", mc_workflow("fails", 20, 10, notify=notify))
    other = submit(env, "alice", mc_workflow("aborted", 20, 10))
    register(env)
    first, second = acquire(env, jobs=2)
    complete(env, first, files=[out(first)])
    env.pull.release(
        env.who("agent1"), "a1", second.allocation_id,
        ReleaseRequest(lease_token=second.lease_token, failed=True, reason="OutOfMemory: rss 4 GB"),
    )
    env.requests.abort(env.who("alice"), other, "wrong generator settings")
    sender = Sender(env.db, NotifyConfig.model_validate(config(smtp_port, hook, new_secret())))
    try:
        until(lambda: bool(sink.to(OPS_MAIL)), lambda: sender.tick())
        sender.tick()
    finally:
        sender.close()
    service, ops = NotificationService(env.db), env.who("ops")
    assert [n.event for n in service.list(ops, request_id=rid)] == ["failed"]
    assert [n.event for n in service.list(ops, request_id=other)] == ["aborted"]
    [mail] = sink.to(OPS_MAIL)
    text = mail.get_payload()
    assert "FAILED" in mail["Subject"]
    assert "OutOfMemory: rss 4 GB" in text and f"prodrequest clone {rid}" in text
    assert "failed    10" in text
    assert not sink.to(OWNER_MAIL), "the owner rule is for completions; the notify list has no mail"
