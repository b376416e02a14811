"""Components used by the benchmarks (loaded through `components.plugins`)."""

from __future__ import annotations

import json
import os
import time
from typing import Any

from prodagent.messaging.types import Anything, declare
from prodagent.runtime.component import Component, Context, handles

# Sent by the benchmark scripts themselves (no producer component).
declare("BenchWork", Anything, (), {"BenchConsumer"})
declare("BenchPing", Anything, (), {"BenchConsumer"})
declare("BenchPublish", Anything, (), {"BenchSink"})


class BenchConsumer(Component):
    """Acknowledges `BenchWork` doing nothing else; records delivery latency of `BenchPing`."""

    name = "BenchConsumer"

    def setup(self) -> None:
        self.latencies: list[float] = []

    @handles("BenchWork")
    def on_work(self, ctx: Context, payload: dict[str, Any]) -> None:
        pass

    @handles("BenchPing")
    def on_ping(self, ctx: Context, payload: dict[str, Any]) -> None:
        self.latencies.append(time.time() - payload["sent_at"])

    def teardown(self) -> None:
        out = os.environ.get("BENCH_LATENCY_FILE")
        if out and self.latencies:
            with open(out, "w") as fh:
                json.dump(self.latencies, fh)


class BenchSink(Component):
    """Subscribed to `BenchPublish` but never run: publish-only measurements land here."""

    name = "BenchSink"

    @handles("BenchPublish")
    def on_publish(self, ctx: Context, payload: dict[str, Any]) -> None:
        pass


PLUGINS = {"BenchConsumer": "bench.components:BenchConsumer", "BenchSink": "bench.components:BenchSink"}
