"""The notification sender (`prodmanager notify`): a loop of three idempotent steps.

1. scan: live requests without progress for `stall_after_s`, or holding jobs that wait for an
   operator, get an `attention` notification (the cause names the progress time or the count,
   so a repeated scan adds nothing);
2. expand: each new outbox row becomes one delivery per recipient (the request's notify list
   plus the operator's matching rules); a delivery whose content already went to that target
   within the repeat window is recorded as suppressed;
3. deliver: due deliveries are claimed (held for `claim_s`), sent with no transaction open, and
   each attempt recorded; failures retry on the jittered schedule, a 410 stops the endpoint.

A sender killed at any point loses nothing: an unrecorded attempt is retried after its claim
runs out, with the same message id (`webhook-id`), so a receiver can drop the repeat.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import threading
import time
import uuid
from typing import Any

import httpx
import sqlalchemy as sa

from prodmanager.db import notify_queries as nq
from prodmanager.db.engine import Database
from prodmanager.notify import content, outbox
from prodmanager.notify.channels import Outcome, send_email, send_webhook
from prodmanager.notify.config import NotifyConfig
from prodmanager.states import RequestState

log = logging.getLogger(__name__)

STALL_STATES = (RequestState.ASSIGNED, RequestState.RUNNING)
LIVE_STATES = (RequestState.ASSIGNED, RequestState.RUNNING, RequestState.PAUSED)
OPERATOR_JOB_STATES = ("paused", "exhausted")  # prodagent.jobs.states.NEEDS_OPERATOR
BATCH = 100  # notifications expanded per pass
# Deliveries claimed per pass: few, so that all are sent well within their claim even when
# each waits its whole HTTP timeout (another sender may take them once the claim runs out).
DELIVER_BATCH = 5


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class Sender:
    def __init__(self, db: Database, config: NotifyConfig) -> None:
        self.db = db
        self.config = config
        self.http = httpx.Client(timeout=config.http_timeout_s, follow_redirects=False)
        self._last_scan = 0.0

    def close(self) -> None:
        self.http.close()

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                busy = self.tick()
            except Exception:  # noqa: BLE001 - the sender outlives a bad pass; claims expire
                log.exception("notification sender pass failed; trying again")
                busy = False
            if not busy:
                stop.wait(self.config.poll_s)

    def tick(self, now: float | None = None) -> bool:
        """One pass; True when it did something (the loop then goes on without sleeping)."""
        now = time.time() if now is None else now
        if now - self._last_scan >= self.config.scan_every_s:
            self.scan(now)
            self._last_scan = now
        expanded = self.expand(now)
        sent = self.deliver(time.time())
        return bool(expanded or sent)

    # --- 1. scan ---------------------------------------------------------------------------------

    def scan(self, now: float) -> int:
        stall_after = self.config.stall_after_s

        def work(conn: sa.Connection) -> int:
            added = 0
            for request_id, progress in nq.last_progress(conn, [s.value for s in STALL_STATES]):
                if now - progress < stall_after:
                    continue
                hours = (now - progress) / 3600
                why = f"no progress for {hours:.1f} h (threshold {stall_after / 3600:.1f} h)"
                cause = f"stalled:{request_id}:{progress!r}"
                added += outbox.record(conn, request_id, "attention", cause, why, now) is not None
            for row in nq.jobs_waiting_for_operator(
                conn, [s.value for s in LIVE_STATES], OPERATOR_JOB_STATES
            ):
                why = f"{row.n} allocation(s) hold jobs paused for an operator"
                act = (
                    f"prodagent jobs list --state paused,exhausted --request {row.request_id}"
                    "   # on the agent; then prodagent jobs resubmit or kill"
                )
                cause = f"jobs-paused:{row.request_id}:{row.n}"
                added += (
                    outbox.record(conn, int(row.request_id), "attention", cause, why, now, act)
                    is not None
                )
            return added

        return self.db.transaction(work)

    # --- 2. expand -------------------------------------------------------------------------------

    def expand(self, now: float) -> int:
        rows = self.db.read(lambda conn: nq.unexpanded(conn, BATCH))
        for row in rows:
            self.db.transaction(lambda conn, row=row: self._expand_one(conn, row, now))
        return len(rows)

    def _expand_one(self, conn: sa.Connection, row: sa.Row[Any], now: float) -> None:
        if not nq.mark_expanded(conn, int(row.id), now):
            return
        facts = json.loads(row.facts)
        # Identical: the same facts apart from when they were taken.
        content_sha = sha(json.dumps({k: v for k, v in facts.items() if k != "at"}, sort_keys=True))
        for channel, target in self.recipients(facts):
            target_sha = sha(f"{channel}:{target}")
            repeat = self.config.repeat_window_s > 0 and nq.recently_sent(
                conn, target_sha, content_sha, now - self.config.repeat_window_s
            )
            nq.insert_delivery(
                conn,
                notification_id=int(row.id),
                channel=channel,
                target=target,
                target_sha256=target_sha,
                message_id=f"msg_{uuid.uuid4().hex}",
                content_sha256=content_sha,
                state=nq.SUPPRESSED if repeat else nq.PENDING,
                next_attempt_at=now,
                created_at=now,
                updated_at=now,
            )

    def recipients(self, facts: dict[str, Any]) -> list[tuple[str, str]]:
        event, owner = facts["event"], facts["request"]["owner"]
        found: list[tuple[str, str]] = []
        own = facts.get("notify") or {}
        if event in own.get("events", []):
            found += [("email", a) for a in own.get("email", [])]
            found += [("webhook", u) for u in own.get("webhooks", [])]
        for rule in self.config.rules:
            if rule.matches(event, owner):
                if rule.owner and owner in self.config.owner_email:
                    found.append(("email", self.config.owner_email[owner]))
                found += [("email", a) for a in rule.email]
                found += [("webhook", u) for u in rule.webhooks]
        return list(dict.fromkeys(found))  # once per target, in order

    # --- 3. deliver ------------------------------------------------------------------------------

    def deliver(self, now: float) -> int:
        until = now + self.config.claim_s

        def claim(conn: sa.Connection) -> list[tuple[sa.Row[Any], dict[str, Any]]]:
            claimed = []
            for row in nq.due_deliveries(conn, now, DELIVER_BATCH):
                if nq.claim_delivery(conn, row, until):
                    facts = nq.facts_of(conn, int(row.notification_id))
                    claimed.append((row, json.loads(facts)))
            return claimed

        claimed = self.db.transaction(claim)
        for row, facts in claimed:
            outcome = self._send(row, facts)  # no transaction open
            self.db.transaction(lambda conn, row=row, o=outcome: self._record(conn, row, o))
        return len(claimed)

    def _send(self, row: sa.Row[Any], facts: dict[str, Any]) -> Outcome:
        if row.channel == "email":
            return send_email(
                self.config.smtp,
                row.target,
                content.subject(facts),
                content.email_body(facts, self.config.monitor_url),
                row.message_id,
            )
        body = content.webhook_body(facts, row.message_id, self.config.monitor_url)
        return send_webhook(
            self.http, row.target, self.config.webhook_secret(row.target), row.message_id, body
        )

    def _record(self, conn: sa.Connection, row: sa.Row[Any], o: Outcome) -> None:
        now = time.time()
        attempts = int(row.attempts) + 1
        schedule = self.config.retry_schedule_s
        if o.ok:
            state, next_at = nq.DELIVERED, now
        elif o.gone:
            state, next_at = nq.GONE, now
        elif attempts >= len(schedule):
            state, next_at = nq.FAILED, now
        else:
            wait = schedule[attempts] * (1 + self.config.jitter * (2 * random.random() - 1))
            state, next_at = nq.PENDING, now + max(wait, o.retry_after_s or 0.0)
        if not o.ok:
            log.info("delivery %s to %s: %s (attempt %d, %s)", row.id, row.target, o.error, attempts, state)
        nq.record_attempt(conn, int(row.id), now, o.ok, o.status, o.error, o.duration_s, state, next_at)
