"""The main loop of one component process.

Claims batches of messages, hands them to the component, ticks it, beats its heart in the
database, and backs off when idle (from `poll_min_s` doubling to `poll_max_s`), so an idle
component costs a few cheap queries a second. SIGTERM (or SIGINT) finishes the batch in hand
and exits. A database outage is waited out: the loop never dies of one.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from types import FrameType

import sqlalchemy as sa

from prodagent.components.registry import component_class, enabled_classes
from prodagent.config import AgentConfig
from prodagent.db.engine import make_engine
from prodagent.db.migrate import upgrade
from prodagent.errors import DatabaseUnavailable
from prodagent.messaging.journal import InflightJournal
from prodagent.messaging.message import Message, Outgoing
from prodagent.messaging.service import MessageService
from prodagent.metrics.process import ProcessMetrics
from prodagent.runtime.component import Component, Context

log = logging.getLogger(__name__)
HISTORY_PURGE_EVERY_S = 600.0


def wait_for_database(config: AgentConfig, stop: threading.Event | None = None) -> None:
    """Apply migrations, retrying while the database is unreachable."""
    attempt = 0
    while True:
        try:
            upgrade(config.db_url)
            return
        except sa.exc.OperationalError as exc:
            attempt += 1
            if attempt > config.database.connect_retries or (stop and stop.is_set()):
                raise DatabaseUnavailable(f"cannot reach the database: {exc}") from exc
            log.warning("database not reachable (%s); retry %d", exc.__class__.__name__, attempt)
            time.sleep(config.database.retry_wait_s)


def declare_subscriptions(config: AgentConfig, service: MessageService) -> None:
    """Write the subscriptions of every enabled component, so no message is published into the void."""
    for name, cls in enabled_classes(config).items():
        service.declare(name, cls.subscriptions())


def open_service(config: AgentConfig, pool_size: int = 5) -> MessageService:
    engine = make_engine(config.db_url, pool_size=pool_size)
    return MessageService(
        engine, config.agent.name, config.messaging,
        config.database.connect_retries, config.database.retry_wait_s,
    )


class ComponentRunner:
    """Runs one component until stopped."""

    def __init__(self, config: AgentConfig, name: str) -> None:
        self.config = config
        self.name = name
        self.stop_event = threading.Event()
        self.handled = 0
        self.metrics = ProcessMetrics(config, name)

    def request_stop(self, signum: int | None = None, _frame: FrameType | None = None) -> None:
        if signum is not None:
            log.info("%s: signal %d, finishing the batch in hand", self.name, signum)
        self.stop_event.set()

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self.request_stop)
        signal.signal(signal.SIGINT, self.request_stop)

    def run(self) -> None:
        cls = component_class(self.config, self.name)
        wait_for_database(self.config, self.stop_event)
        service = open_service(self.config)
        from prodagent.runtime.liveness import AgentNameInUse, check_name_free

        check_name_free(service.tx, self.config, self.name)  # AgentNameInUse: another agent has it
        declare_subscriptions(self.config, service)
        service.declare(self.name, cls.subscriptions())
        component = cls(self.config, service)
        component.metrics = self.metrics
        component.setup()
        journal = InflightJournal(self.config.workdir / "run", self.name)
        process_id = service.register(self.name)
        try:
            check_name_free(service.tx, self.config, self.name, registered_as=process_id)
        except AgentNameInUse:
            component.teardown()
            service.unregister(process_id)
            service.engine.dispose()
            raise
        self._recover_crashed(service, process_id, journal, component)
        log.info("%s started (process %d), subscribed to %s", self.name, process_id, cls.subscriptions())
        try:
            self._loop(component, service, process_id, journal)
        finally:
            component.teardown()
            try:
                service.heartbeat(process_id, self.handled)
                service.unregister(process_id)
            except Exception:  # noqa: BLE001 - the database may be gone on the way out
                log.warning("%s: could not record the stop", self.name)
            service.engine.dispose()
            log.info("%s stopped after %d messages", self.name, self.handled)

    def _loop(self, component: Component, service: MessageService, process_id: int,
              journal: InflightJournal) -> None:
        settings = self.config.messaging
        batch = min(settings.batch_size, component.batch_limit or settings.batch_size)
        next_beat = 0.0
        next_tick = time.monotonic() if component.tick_interval_s else float("inf")
        next_purge = time.monotonic() + HISTORY_PURGE_EVERY_S
        # The first reconciliation at start-up: what a dead predecessor left is picked up at once.
        next_reconcile = time.monotonic() if component.reconcile_interval_s else float("inf")
        idle_sleep = settings.poll_min_s

        def dispatch(conn: sa.Connection, message: Message, outbox: list[Outgoing]) -> None:
            started = time.perf_counter()
            component.dispatch(conn, message, outbox)
            self.metrics.handled(message.msg_type, time.perf_counter() - started)

        while not self.stop_event.is_set():
            try:
                now = time.monotonic()
                if now >= next_beat:
                    service.heartbeat(process_id, self.handled)
                    next_beat = now + settings.heartbeat_s
                if now >= next_tick or component.tick_now:
                    component.tick_now = False
                    self._tick(component, service)
                    next_tick = time.monotonic() + (component.tick_interval_s or 1.0)
                if now >= next_reconcile:
                    self._reconcile(component, service)
                    next_reconcile = time.monotonic() + (component.reconcile_interval_s or 60.0)
                if now >= next_purge:
                    service.purge_history()
                    next_purge = now + HISTORY_PURGE_EVERY_S
                result = service.consume(self.name, process_id, dispatch, journal, limit=batch)
                seen = result.handled + result.failed + result.skipped
                if seen:
                    self.handled += result.handled
                    idle_sleep = settings.poll_min_s
                    if seen >= batch:
                        continue
                    wait = settings.poll_min_s
                else:
                    wait = idle_sleep
                    idle_sleep = min(idle_sleep * 2, settings.poll_max_s)
                wait = 0.0 if component.tick_now else min(wait, max(0.0, next_tick - time.monotonic()))
                self.stop_event.wait(wait)
            except DatabaseUnavailable as exc:
                log.error("%s: database unavailable, waiting: %s", self.name, exc)
                self.stop_event.wait(settings.poll_max_s * 4)

    def _recover_crashed(self, service: MessageService, process_id: int, journal: InflightJournal,
                         component: Component) -> None:
        """Charge the delivery that killed a dead instance to the message that did it.

        A journal naming one message convicts it. A journal naming a batch does not say which
        one was fatal, so each suspect is handled alone first; if one kills this process too,
        this process's journal names only it.
        """
        suspects: list[int] = []
        for path, ids in journal.orphans():
            if len(ids) == 1:
                service.charge_crashed(ids)
                log.warning("%s: message %d was being handled when an instance died; one delivery charged",
                            self.name, ids[0])
            else:
                suspects += ids
            path.unlink(missing_ok=True)
        if suspects:
            log.warning("%s: an instance died handling %d message(s); handling them one at a time",
                        self.name, len(suspects))
        for message_id in sorted(suspects):
            service.consume(self.name, process_id, component.dispatch, journal, limit=1, only=[message_id])

    def _reconcile(self, component: Component, service: MessageService) -> None:
        """`component.reconcile` in a transaction of its own; a failure is logged, tried next time."""
        try:
            component.transaction(component.reconcile)
        except DatabaseUnavailable:
            raise
        except Exception:  # noqa: BLE001
            log.exception("%s: reconciliation failed", self.name)

    def _tick(self, component: Component, service: MessageService) -> None:
        started = time.perf_counter()
        try:
            self._tick_once(component, service)
        finally:
            self.metrics.ticked(time.perf_counter() - started)

    def _tick_once(self, component: Component, service: MessageService) -> None:
        if not component.tick_in_transaction:
            try:
                component.tick(None)  # type: ignore[arg-type]  # opens its own short transactions
            except DatabaseUnavailable:
                raise
            except Exception:  # noqa: BLE001 - a failing tick is logged and tried again next time
                log.exception("%s: tick failed", self.name)
            return

        def work(conn: sa.Connection) -> None:
            ctx = Context(conn)
            component.tick(ctx)
            if ctx.outbox:
                service.publish_many(conn, ctx.outbox, source=self.name)

        try:
            service.tx.run(work)
        except DatabaseUnavailable:
            raise
        except Exception:  # noqa: BLE001 - a failing tick is logged and tried again next time
            log.exception("%s: tick failed", self.name)
