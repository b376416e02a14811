"""A production stack for fault tests: a ProdManager server that can be killed and restarted on
its port, a TCP proxy that can black-hole it, and agents on the JobEmulator (real processes)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from prodagent.db.schema import pa_allocation, pa_file, pa_job
from prodagent.demo.stack import AgentProcesses, Manager, free_port, write_agent_config
from prodagent.runtime import pidfiles

COMPONENTS = ["ResourceMonitor", "ProdMgrInterface", "JobCreator", "JobSubmitter", "JobTracker",
              "ErrorHandler", "MergeSensor", "Cleanup"]
EVENTS_PER_JOB = 100


def workflow(name: str, jobs: int) -> dict[str, Any]:
    return {
        "kind": "montecarlo", "name": name,
        "payload": {"transformation": "pythia", "version": "8.317", "parameters": {"process": "minbias"}},
        "events": {"total": EVENTS_PER_JOB * jobs, "per_job": EVENTS_PER_JOB},
        "output": {"dataset": f"/Faults/{name}/GEN", "tier": "GEN"},
        "merge": {"enabled": True, "min_size_bytes": 4 * 1024, "max_size_bytes": 8 * 1024,
                  "max_events": 8 * EVENTS_PER_JOB, "max_wait_s": 5},
        "retry": {"max_retries": 3, "cooloff": "linear", "base_s": 1},
        "resources": {"memory_mb": 500, "time_s": 300},
    }


class Proxy:
    """A TCP proxy to ProdManager; `blackhole()` makes it accept and never answer (nor forward)."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = free_port()
        self.holed = threading.Event()
        self.sock = socket.create_server(("127.0.0.1", self.port))
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def blackhole(self, on: bool = True) -> None:
        if on:
            self.holed.set()
        else:
            self.holed.clear()

    def close(self) -> None:
        self.closed = True
        self.sock.close()

    def _accept(self) -> None:
        while not self.closed:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        if self.holed.is_set():
            self._hold(client)
            return
        try:
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
        except OSError:
            client.close()
            return
        for src, dst in ((client, upstream), (upstream, client)):
            threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _hold(self, client: socket.socket) -> None:
        """Accepted, never answered: the caller's read times out."""
        while self.holed.is_set() and not self.closed:
            time.sleep(0.2)
        client.close()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                while self.holed.is_set():  # a kept-alive connection hangs too
                    time.sleep(0.2)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)


@dataclass
class FaultStack:
    tmp: Path
    agent_db: str
    lease_s: float = 60.0
    via_proxy: bool = False
    manager: Manager = field(init=False)
    proxy: Proxy | None = field(init=False, default=None)
    agents: list[AgentProcesses] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        self.manager = Manager(self.tmp / "pm", f"sqlite:///{self.tmp / 'pm' / 'pm.db'}", lease_s=self.lease_s)
        self.manager.start()
        if self.via_proxy:
            self.proxy = Proxy(self.manager.port)
        self.engine = sa.create_engine(self.agent_db)
        self.client = self.manager.client("requester", "tester")

    def add_agent(self, name: str, slots: int = 4, pmi: dict[str, Any] | None = None) -> AgentProcesses:
        settings = {"ProdMgrInterface": {"tick_s": 1.0, "queue_factor": 0.5, "http_timeout_s": 2.0,
                                         "http_retries": 1, "outage_backoff_max_s": 2.0, **(pmi or {})}}
        batch = {"plugin": "emulator", "options": {
            "seed": 7, "slots": slots, "duration": {"distribution": "uniform", "min_s": 0.5, "max_s": 1.5},
            "output_bytes": 1024}}
        path = write_agent_config(self.tmp / f"{name}.yaml", self.tmp / name, self.manager, db_url=self.agent_db,
                                  name=name, settings=settings, batch=batch)
        if self.proxy is not None:  # the agent talks to ProdManager through the proxy
            text = path.read_text().replace(self.manager.url, self.proxy.url)
            path.write_text(text)
        agent = AgentProcesses(path)
        agent.start()
        self.agents.append(agent)
        return agent

    def kill_manager(self) -> None:
        assert self.manager.proc is not None
        os.killpg(self.manager.proc.pid, signal.SIGKILL)
        self.manager.proc.wait(10)

    def pids(self) -> dict[tuple[str, str], int | None]:
        """(agent, component) -> pid of each live component process."""
        out: dict[tuple[str, str], int | None] = {}
        for agent in self.agents:
            config = agent.config
            for name in COMPONENTS:
                state = pidfiles.read_pid(config, name)
                out[(config.agent.name, name)] = state.pid if state.alive else None
        return out

    def wait_request(self, request_id: int, timeout: float = 240, poll: Callable[[], None] | None = None) -> Any:
        deadline = time.monotonic() + timeout
        request = None
        while time.monotonic() < deadline:
            if poll:
                poll()
            request = self.client.get(request_id)
            if request.state == "closed" and request.counters.events_merged >= request.total_events:
                return request
            time.sleep(1.0)
        logs = "\n".join(p.read_text()[-2000:] for a in self.agents
                         for p in (a.config.workdir / "logs").glob("ProdMgrInterface*.log"))
        raise AssertionError(f"request not closed: {request}\n{self.allocation_states()}\n{logs}")

    def allocation_states(self) -> list[Any]:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(pa_allocation.c.agent, pa_allocation.c.state, sa.func.count())
                                .group_by(pa_allocation.c.agent, pa_allocation.c.state)).all()

    def merged_events_in_agents(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.coalesce(sa.func.sum(pa_file.c.events), 0))
                                    .where(pa_file.c.kind == "merged", pa_file.c.reported == sa.true())).scalar())

    def jobs_done(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).where(
                pa_job.c.job_type == "production", pa_job.c.state.in_(["success", "cleaned"]))).scalar())

    def jobs_live(self) -> int:
        """Production jobs the agents hold that have not finished yet."""
        with self.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).where(
                pa_job.c.job_type == "production",
                pa_job.c.state.in_(["created", "submitted", "running"]))).scalar())

    def log_of(self, agent: AgentProcesses, component: str) -> str:
        path = agent.config.workdir / "logs" / f"{component}.log"
        return path.read_text() if path.exists() else ""

    def close(self) -> None:
        for agent in self.agents:
            agent.stop()
        if self.proxy is not None:
            self.proxy.close()
        self.manager.stop()
        self.engine.dispose()


def wait_until(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")
