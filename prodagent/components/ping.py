"""Ping and Echo: a pair of built-in components that prove the message path end to end.

Ping publishes `Ping` every tick; Echo answers each with `Pong`; Ping logs the round trip.
"""

from __future__ import annotations

import time
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from prodagent.runtime.component import Component, Context, handles


class PingSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tick_s: float = Field(5.0, gt=0)  # how often to ping


class Ping(Component):
    name = "Ping"
    Settings = PingSettings

    def tick(self, ctx: Context) -> None:
        ctx.publish("Ping", {"sent_at": time.time()})

    @handles("Pong")
    def on_pong(self, ctx: Context, payload: dict[str, Any]) -> None:
        self.log.info("Pong after %.1f ms", (time.time() - payload["sent_at"]) * 1000)


class Echo(Component):
    name = "Echo"

    @handles("Ping")
    def on_ping(self, ctx: Context, payload: dict[str, Any]) -> None:
        ctx.publish("Pong", payload)
