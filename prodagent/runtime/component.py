"""The component base class: a handler per message type, an optional periodic tick.

A subclass declares its handlers with `@handles("Type")`. Each handler gets a `Context` (the
open transaction and a `publish` that commits with it) and the message; it must be idempotent,
because a message can come back after a crash. `tick` runs every `tick_interval_s` seconds in a
transaction of its own, for polling work (tracking jobs, merging, resource figures). A component
that calls remote services sets `tick_in_transaction = False`: its tick then gets no transaction
and opens short ones itself with `transaction()` (read, then call, then record).

`reconcile` runs every `reconcile_interval_s` seconds (from `Settings.reconcile_s`), also in a
transaction of its own: it re-derives from the database the work its messages would have
brought, so a lost or dead-lettered message delays work but never strands it. It acts only on
what has waited longer than one interval (the message normally comes first), and like a handler
it must be idempotent: it checks states under lock and leaves what a message already did.
Handled types must be declared in `prodagent.messaging.types`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict

from prodagent.messaging import types
from prodagent.messaging.message import Message, Outgoing

if TYPE_CHECKING:
    from prodagent.config import AgentConfig
    from prodagent.messaging.service import MessageService
    from prodagent.metrics.process import ProcessMetrics

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")


class NoSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")


def handles(msg_type: str) -> Callable[[F], F]:
    """Mark a method as the handler of `msg_type`."""

    def mark(fn: F) -> F:
        fn.__dict__.setdefault("_handles", []).append(msg_type)
        return fn

    return mark


@dataclass
class Context:
    """What a handler or tick works with: one transaction and its outgoing messages."""

    conn: sa.Connection
    outbox: list[Outgoing] = field(default_factory=list)
    message: Message | None = None

    def publish(self, msg_type: str, payload: dict[str, Any] | None = None,
                delay: float = 0.0, priority: int = 0) -> None:
        self.outbox.append(Outgoing(msg_type, payload or {}, delay, priority))


class Component:
    """Base of every agent component."""

    name: ClassVar[str]
    Settings: ClassVar[type[BaseModel]] = NoSettings
    tick_interval_s: float | None = None  # from `Settings.tick_s` when the component has one
    reconcile_interval_s: float | None = None  # from `Settings.reconcile_s` when it has one
    tick_in_transaction: ClassVar[bool] = True  # False: tick(None), transactions via `transaction()`
    tick_now: bool = False  # set by a handler to have the runner tick at once (reset by the runner)
    # Messages handled per transaction when fewer than `messaging.batch_size`: for handlers that
    # hold many rows (or the disk) per message, so one transaction does not hold them for long.
    batch_limit: ClassVar[int | None] = None
    metrics: ProcessMetrics | None = None  # this process's histograms, set by the runner

    def __init__(self, config: AgentConfig, service: MessageService) -> None:
        self.config = config
        self.service = service
        self.settings: Any = config.component_settings(self.name, self.Settings)
        self.log = logging.getLogger(f"prodagent.{self.name}")
        self._handlers = self.handler_table()
        # A component ticks when its settings have `tick_s`: the default lives in its Settings.
        tick = getattr(self.settings, "tick_s", None)
        if tick:
            self.tick_interval_s = float(tick)
        reconcile = getattr(self.settings, "reconcile_s", None)
        if reconcile:
            self.reconcile_interval_s = float(reconcile)

    @classmethod
    def handler_table(cls) -> dict[str, str]:
        """{message type: method name}, from the `@handles` marks; every type must be declared."""
        table: dict[str, str] = {}
        for klass in reversed(cls.__mro__):
            for attr, value in vars(klass).items():
                for msg_type in getattr(value, "_handles", ()):
                    types.get(msg_type)  # raises MessageTypeError for an undeclared type
                    table[msg_type] = attr
        return table

    @classmethod
    def subscriptions(cls) -> list[str]:
        return sorted(cls.handler_table())

    def setup(self) -> None:
        """Called once after the database is ready, before the first message."""

    def teardown(self) -> None:
        """Called once on the way out."""

    def tick(self, ctx: Context) -> None:
        """Periodic work; runs every `Settings.tick_s` seconds in its own transaction."""

    def reconcile(self, ctx: Context) -> None:
        """Slow periodic catch-up from the database; runs every `Settings.reconcile_s` seconds."""

    def transaction(self, work: Callable[[Context], T]) -> T:
        """Run `work(ctx)` in one short transaction of its own; what it publishes commits with it.

        Retried as a whole on lock conflicts, like every transaction: `work` must be idempotent.
        """
        def run(conn: sa.Connection) -> T:
            ctx = Context(conn)
            result = work(ctx)
            if ctx.outbox:
                self.service.publish_many(conn, ctx.outbox, source=self.name)
            return result

        return self.service.tx.run(run)

    def dispatch(self, conn: sa.Connection, message: Message, outbox: list[Outgoing]) -> None:
        method = self._handlers.get(message.msg_type)
        if method is None:
            raise LookupError(f"{self.name} has no handler for {message.msg_type}")
        ctx = Context(conn, outbox, message)
        getattr(self, method)(ctx, message.payload)
