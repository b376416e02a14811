"""The message service: components talk to each other only through it.

Semantics (see the project README):
- publish fans a message out to every component subscribed to its type, inside the caller's
  transaction, with an optional delay and priority;
- subscriptions are declared up front for all configured components, so a message published
  before its consumer first starts waits for it;
- consumers claim batches (`SKIP LOCKED`), then handle the batch and acknowledge it in one
  transaction together with the handlers' database work and the messages they publish;
- a claim is a lease: a consumer that dies leaves its messages to come back when the lease ends,
  or at once when its component restarts on the same host;
- a message that fails `max_deliveries` times (or keeps killing its consumer) goes to the dead
  letters; the rest of the batch is unaffected.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import psutil
import sqlalchemy as sa

from prodagent.config import MessagingSection
from prodagent.db.engine import is_sqlite
from prodagent.errors import DatabaseUnavailable
from prodagent.messaging import queries as q
from prodagent.messaging import types
from prodagent.messaging.journal import InflightJournal
from prodagent.messaging.message import Message, Outgoing
from prodagent.messaging.retry import TransactionRunner, is_connection_lost, is_lock_conflict

log = logging.getLogger(__name__)

Handler = Callable[[sa.Connection, Message, list[Outgoing]], None]
SUBSCRIPTION_TTL_S = 10.0
# MariaDB claims look at most this many batches deep for one not held by other consumers.
CANDIDATE_WINDOWS = 16


class _HandlerFailed(Exception):
    """A handler raised inside the fast path; the batch goes the isolating way."""


@dataclass
class BatchResult:
    handled: int = 0
    failed: int = 0
    dead: int = 0
    skipped: int = 0


class MessageService:
    """One agent's view of the message tables."""

    def __init__(
        self,
        engine: sa.Engine,
        agent: str,
        settings: MessagingSection | None = None,
        connect_retries: int = 30,
        retry_wait_s: float = 1.0,
    ) -> None:
        self.engine = engine
        self.agent = agent
        self.settings = settings or MessagingSection()
        self.tx = TransactionRunner(engine, connect_retries, retry_wait_s)
        self._fanout: dict[str, list[str]] = {}
        self._fanout_loaded_at = 0.0
        self._mysql = not is_sqlite(engine)  # MariaDB or MySQL

    # -- subscriptions -------------------------------------------------------------------------

    def declare(self, component: str, msg_types: Sequence[str]) -> None:
        """Make `component`'s subscriptions exactly `msg_types` (idempotent); each must be declared."""
        wanted = sorted(set(msg_types))
        for msg_type in wanted:
            types.get(msg_type)

        def work(conn: sa.Connection) -> None:
            have = set(conn.execute(q.subscriptions_of(self.agent, component)).scalars())
            conn.execute(q.drop_subscriptions(self.agent, component, wanted))
            missing = [t for t in wanted if t not in have]
            if missing:
                conn.execute(
                    q.insert_subscription,
                    [{"agent": self.agent, "component": component, "msg_type": t} for t in missing],
                )

        self.tx.run(work)
        self._fanout_loaded_at = 0.0

    def subscribers(self, conn: sa.Connection, msg_type: str) -> list[str]:
        now = time.monotonic()
        if now - self._fanout_loaded_at > SUBSCRIPTION_TTL_S or msg_type not in self._fanout:
            fanout: dict[str, list[str]] = {}
            for msg_t, component in conn.execute(q.subscribers(self.agent)):
                fanout.setdefault(msg_t, []).append(component)
            self._fanout = fanout
            self._fanout_loaded_at = now
        return self._fanout.get(msg_type, [])

    # -- publishing ----------------------------------------------------------------------------

    def publish_many(
        self, conn: sa.Connection, messages: Sequence[Outgoing], source: str | None = None
    ) -> int:
        """Insert one row per subscriber of each message, inside the caller's transaction.

        Every message is checked against its declaration first (`prodagent.messaging.types`):
        an undeclared type, a refused payload or a foreign producer raises `MessageTypeError`.
        """
        now = time.time()
        rows: list[dict[str, Any]] = []
        for msg in messages:
            types.check(msg.msg_type, msg.payload, source)
            targets = self.subscribers(conn, msg.msg_type)
            if not targets:
                log.debug("no subscriber for %s; message dropped", msg.msg_type)
                continue
            body = json.dumps(msg.payload, separators=(",", ":"))
            for component in targets:
                rows.append({
                    "agent": self.agent, "component": component, "msg_type": msg.msg_type,
                    "payload": body, "priority": msg.priority, "source": source,
                    "created_at": now, "available_at": now + msg.delay, "deliveries": 0,
                })
        if rows:
            conn.execute(q.insert_message, rows)
        return len(rows)

    def publish(
        self,
        conn: sa.Connection,
        msg_type: str,
        payload: dict[str, Any] | None = None,
        delay: float = 0.0,
        priority: int = 0,
        source: str | None = None,
    ) -> int:
        return self.publish_many(conn, [Outgoing(msg_type, payload or {}, delay, priority)], source)

    def send(self, msg_type: str, payload: dict[str, Any] | None = None, delay: float = 0.0,
             priority: int = 0, source: str | None = None) -> int:
        """Publish in a transaction of its own."""
        return self.tx.run(lambda conn: self.publish(conn, msg_type, payload, delay, priority, source))

    # -- processes -----------------------------------------------------------------------------

    def register(self, component: str) -> int:
        """Record this process as an instance of `component`; free claims of dead instances."""
        now = time.time()
        host = socket.gethostname()

        def work(conn: sa.Connection) -> int:
            dead = [
                row.id
                for row in conn.execute(q.processes_of(self.agent, component))
                if row.stopped_at is None and row.host == host and not _pid_alive(row.pid, row.started_at)
            ]
            if dead:
                conn.execute(q.release_claims_of(dead, now))
                for pid_row in dead:
                    conn.execute(q.stop_process(pid_row, now))
            result = conn.execute(q.insert_process, {
                "agent": self.agent, "component": component, "host": host, "pid": os.getpid(),
                "started_at": now, "heartbeat_at": now, "handled": 0,
            })
            return int(result.inserted_primary_key[0])

        return self.tx.run(work)

    def heartbeat(self, process_id: int, handled: int) -> None:
        self.tx.run(lambda conn: conn.execute(q.heartbeat(process_id, time.time(), handled)))

    def unregister(self, process_id: int) -> None:
        self.tx.run(lambda conn: conn.execute(q.stop_process(process_id, time.time())))

    # -- consuming -----------------------------------------------------------------------------

    def claim(self, component: str, process_id: int, limit: int | None = None) -> list[Message]:
        """Claim up to `limit` ready messages for `component` under a lease."""
        limit = limit or self.settings.batch_size

        def work(conn: sa.Connection) -> list[Message]:
            now = time.time()
            fresh = self._fetch(conn, component, now, limit)
            if fresh:
                conn.execute(q.mark_claimed([m.id for m in fresh], process_id, now + self.settings.lease_s))
            return fresh

        return self.tx.run(work)

    def _fetch(self, conn: sa.Connection, component: str, now: float, limit: int,
               only: Sequence[int] | None = None) -> list[Message]:
        """Lock up to `limit` ready messages; dead-letter those delivered too often already."""
        max_deliveries = self.settings.max_deliveries
        rows = self._lock_ready(conn, component, now, limit, only)
        worn = [r.id for r in rows if r.deliveries >= max_deliveries]
        if worn:
            why = f"delivered {max_deliveries} times without acknowledgement"
            conn.execute(q.copy_to_dead_letters(worn, now, why))
            conn.execute(*q.delete_messages(worn, self._mysql))
            log.error("%s: %d message(s) to dead letters: %s", component, len(worn), why)
        loads = json.loads
        return [
            Message(id_, msg_type, loads(payload), priority, source, created_at, deliveries + 1)
            for id_, msg_type, payload, priority, source, created_at, deliveries in rows
            if deliveries < max_deliveries
        ]

    def _lock_ready(self, conn: sa.Connection, component: str, now: float, limit: int,
                    only: Sequence[int] | None) -> Sequence[sa.Row[Any]]:
        if only is not None:
            return conn.execute(*q.lock_ready(only, now, self._mysql)).all()
        if not self._mysql:
            return conn.execute(*q.claimable(self.agent, component, now, limit)).all()
        # Candidates come a batch at a time; a batch that other consumers hold is skipped.
        for offset in range(0, limit * CANDIDATE_WINDOWS, limit):
            ids = conn.execute(*q.candidates(self.agent, component, now, limit, offset)).scalars().all()
            if not ids:
                break
            rows = conn.execute(*q.lock_ready(ids, now, self._mysql)).all()
            if rows:
                return rows
        return []

    def consume(
        self, component: str, process_id: int, handler: Handler,
        journal: InflightJournal | None = None, limit: int | None = None, only: Sequence[int] | None = None,
    ) -> BatchResult:
        """Claim, handle and acknowledge one batch in a single transaction (the fast path).

        The rows stay locked (`SKIP LOCKED` for the others) while the handlers run; a crash
        rolls everything back and the messages come back at once. If a handler raises, the
        batch is rolled back and redone through `claim` + `handle`, which isolate the failing
        message and count its deliveries.
        """
        limit = limit or self.settings.batch_size

        def work(conn: sa.Connection) -> BatchResult:
            messages = self._fetch(conn, component, time.time(), limit, only)
            if not messages:
                return BatchResult()
            retried = [m for m in messages if m.deliveries > 1]
            if retried:
                # A message that failed or crashed its consumer before goes alone, so that if it
                # fails again, nothing else is blamed or held back with it.
                messages = retried[:1]
            if journal:
                journal.write([m.id for m in messages])
            outbox: list[Outgoing] = []
            try:
                for message in messages:
                    handler(conn, message, outbox)
            except Exception as exc:
                if is_lock_conflict(exc) or is_connection_lost(exc):
                    raise
                raise _HandlerFailed from exc
            self._acknowledge(conn, component, messages, outbox, uncounted=1)
            return BatchResult(handled=len(messages))

        try:
            return self.tx.run(work)
        except _HandlerFailed:
            return self.handle(component, process_id, self.claim(component, process_id, limit), handler)
        finally:
            if journal:
                journal.clear()

    def charge_crashed(self, ids: Sequence[int]) -> int:
        """Count one delivery for each message a dead consumer was handling."""
        if not ids:
            return 0
        return self.tx.run(lambda conn: conn.execute(q.charge_delivery(ids)).rowcount)

    def handle(
        self, component: str, process_id: int, messages: Sequence[Message], handler: Handler
    ) -> BatchResult:
        """Handle claimed messages and acknowledge them in the handlers' transaction.

        The whole batch commits at once. If a handler raises, the batch is rolled back and its
        messages are handled one per transaction, so only the failing one is retried.
        """
        if not messages:
            return BatchResult()
        try:
            done, skipped = self.tx.run(lambda conn: self._handle_in(conn, component, process_id, messages, handler))
            return BatchResult(handled=done, skipped=skipped)
        except DatabaseUnavailable:
            raise
        except Exception:  # noqa: BLE001 - a handler failed; isolate it below
            if len(messages) == 1:
                return self._failed(component, process_id, messages[0])
        result = BatchResult()
        for message in messages:
            try:
                done, skipped = self.tx.run(lambda conn, m=message: self._handle_in(conn, component, process_id, [m], handler))
                result.handled += done
                result.skipped += skipped
            except DatabaseUnavailable:
                raise
            except Exception:  # noqa: BLE001
                one = self._failed(component, process_id, message)
                result.failed += one.failed
                result.dead += one.dead
        return result

    def _handle_in(
        self, conn: sa.Connection, component: str, process_id: int,
        messages: Sequence[Message], handler: Handler,
    ) -> tuple[int, int]:
        # Lock the rows still claimed by this process: a row gone (acknowledged by a commit whose
        # answer was lost) or taken by another process after the lease ended is skipped.
        mine = set(conn.execute(*q.lock_still_mine([m.id for m in messages], process_id, self._mysql)).scalars())
        outbox: list[Outgoing] = []
        handled = [m for m in messages if m.id in mine]
        for message in handled:
            handler(conn, message, outbox)
        self._acknowledge(conn, component, handled, outbox, uncounted=0)
        return len(handled), len(messages) - len(handled)

    def _acknowledge(self, conn: sa.Connection, component: str, handled: Sequence[Message],
                     outbox: list[Outgoing], uncounted: int) -> None:
        """Publish what the handlers produced, keep history, remove the handled messages.

        `uncounted` is 1 when the rows' delivery count does not include this delivery yet (the
        fast path never updates the rows it consumes).
        """
        if outbox:
            self.publish_many(conn, outbox, source=component)
        if not handled:
            return
        ids = [m.id for m in handled]
        if self.settings.history:
            conn.execute(*q.copy_to_history(ids, time.time(), uncounted, self._mysql))
        conn.execute(*q.delete_messages(ids, self._mysql))

    def _failed(self, component: str, process_id: int, message: Message) -> BatchResult:
        error = traceback.format_exc(limit=8)[-4000:]
        dead = message.deliveries >= self.settings.max_deliveries
        log.error("%s: handler for %s (message %d, delivery %d) failed%s:\n%s", component,
                  message.msg_type, message.id, message.deliveries,
                  "; moved to dead letters" if dead else "", error)

        def work(conn: sa.Connection) -> None:
            if not conn.execute(*q.lock_still_mine([message.id], process_id, self._mysql)).first():
                return
            now = time.time()
            if dead:
                conn.execute(q.copy_to_dead_letters([message.id], now, error))
                conn.execute(*q.delete_messages([message.id], self._mysql))
            else:
                retry_at = now + self.settings.retry_backoff_s * message.deliveries
                conn.execute(q.release([message.id], retry_at, error))

        self.tx.run(work)
        return BatchResult(failed=1, dead=int(dead))

    # -- observing and operating ---------------------------------------------------------------

    def queued(self, conn: sa.Connection, component: str, msg_type: str) -> list[dict[str, Any]]:
        """Payloads of `component`'s messages of `msg_type` still to be handled: what its
        reconciliation need not redo (they are late, not lost)."""
        return [json.loads(text) for text in conn.execute(q.queued_payloads(self.agent, component, msg_type)).scalars()]

    def queue_stats(self) -> list[dict[str, Any]]:
        now = time.time()

        def work(conn: sa.Connection) -> list[dict[str, Any]]:
            return [
                {"component": r.component, "msg_type": r.msg_type, "pending": int(r.pending),
                 "ready": int(r.ready or 0), "oldest_age_s": round(now - r.oldest, 3),
                 "max_deliveries": int(r.max_deliveries or 0)}
                for r in conn.execute(q.queue_stats(self.agent, now))
            ]

        return self.tx.run(work)

    def dead_letter_counts(self) -> dict[str, int]:
        return self.tx.run(lambda conn: {r.component: int(r.dead) for r in conn.execute(q.dead_letter_counts(self.agent))})

    def dead_letters(self, component: str | None = None) -> list[dict[str, Any]]:
        return self.tx.run(lambda conn: [dict(r._mapping) for r in conn.execute(q.dead_letters(self.agent, component))])

    def requeue(self, message_id: int) -> bool:
        """Put a dead letter back in its component's queue with a fresh delivery count."""

        def work(conn: sa.Connection) -> bool:
            row = conn.execute(q.dead_letter(self.agent, message_id)).first()
            if row is None:
                return False
            now = time.time()
            conn.execute(q.insert_message, {
                "agent": row.agent, "component": row.component, "msg_type": row.msg_type,
                "payload": row.payload, "priority": row.priority, "source": row.source,
                "created_at": row.created_at, "available_at": now, "deliveries": 0,
            })
            conn.execute(q.delete_dead_letters(self.agent, [message_id]))
            return True

        return self.tx.run(work)

    def purge_dead_letters(self, ids: Sequence[int] | None = None) -> int:
        return self.tx.run(lambda conn: conn.execute(q.delete_dead_letters(self.agent, ids)).rowcount)

    def purge_history(self, older_than_s: float | None = None) -> int:
        age = self.settings.history_hours * 3600 if older_than_s is None else older_than_s
        return self.tx.run(lambda conn: conn.execute(q.purge_history(time.time() - age)).rowcount)


def _pid_alive(pid: int, started_at: float) -> bool:
    """True if `pid` runs and started no later than the row says (not a recycled pid)."""
    try:
        proc = psutil.Process(pid)
        return proc.create_time() <= started_at + 1.0 and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False
