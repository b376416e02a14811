"""Components used by the messaging tests (loaded through `components.plugins`)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from prodagent.messaging.types import Anything, declare
from prodagent.runtime.component import Component, Context, handles

# The test vocabulary: sent by the tests themselves (no producer component) unless named.
declare("Work", Anything, (), {"Recorder", "Crasher"})
declare("Done", Anything, {"Recorder"}, {"Sink"})
declare("Die", Anything, (), {"Crasher"})
declare("Bad", Anything, (), {"Failing"})
declare("Good", Anything, (), {"Failing"})

metadata = sa.MetaData()
effects = sa.Table(
    "t_effect",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("msg_key", sa.String(64), nullable=False, index=True),
    sa.Column("pid", sa.Integer, nullable=False),
)


class Recorder(Component):
    """Records each `Work` message as one row in t_effect; can hang once, to be killed."""

    name = "Recorder"

    @handles("Work")
    def on_work(self, ctx: Context, payload: dict[str, Any]) -> None:
        ctx.conn.execute(effects.insert(), {"msg_key": payload["key"], "pid": os.getpid()})
        marker = payload.get("hang_once")
        if marker and not Path(marker).exists():
            Path(marker).write_text(str(os.getpid()))
            time.sleep(600)
        if payload.get("sleep"):
            time.sleep(payload["sleep"])
        if payload.get("reply"):
            ctx.publish("Done", {"key": payload["key"]})


class Crasher(Component):
    """`Die` kills its own process in the middle of the handler; `Work` records an effect."""

    name = "Crasher"

    @handles("Die")
    def on_die(self, ctx: Context, payload: dict[str, Any]) -> None:
        ctx.conn.execute(effects.insert(), {"msg_key": "died", "pid": os.getpid()})
        os.kill(os.getpid(), 9)

    @handles("Work")
    def on_work(self, ctx: Context, payload: dict[str, Any]) -> None:
        ctx.conn.execute(effects.insert(), {"msg_key": payload["key"], "pid": os.getpid()})


class Sink(Component):
    """Receives `Done` messages from Recorder (fan-out and chaining)."""

    name = "Sink"

    @handles("Done")
    def on_done(self, ctx: Context, payload: dict[str, Any]) -> None:
        ctx.conn.execute(effects.insert(), {"msg_key": "done-" + payload["key"], "pid": os.getpid()})


class Failing(Component):
    """`Bad` always raises; `Good` records an effect."""

    name = "Failing"

    @handles("Bad")
    def on_bad(self, ctx: Context, payload: dict[str, Any]) -> None:
        ctx.conn.execute(effects.insert(), {"msg_key": "bad", "pid": os.getpid()})
        raise RuntimeError("this handler always fails")

    @handles("Good")
    def on_good(self, ctx: Context, payload: dict[str, Any]) -> None:
        ctx.conn.execute(effects.insert(), {"msg_key": payload["key"], "pid": os.getpid()})


PLUGINS = {
    "Recorder": "tests.messaging.components:Recorder",
    "Sink": "tests.messaging.components:Sink",
    "Failing": "tests.messaging.components:Failing",
    "Crasher": "tests.messaging.components:Crasher",
}


def effect_counts(engine: sa.Engine) -> dict[str, int]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(effects.c.msg_key, sa.func.count()).group_by(effects.c.msg_key)
        ).all()
    return {key: int(n) for key, n in rows}
