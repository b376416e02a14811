"""Is this agent's component already alive elsewhere? (one agent name, one running agent)

An agent is one work directory on one host. A component may run as several instances of the
same agent (competing consumers started from one config), but a second agent started under an
existing agent's name (a copied config: same `agent.name`, another work directory or host)
would run every job twice. Before a component starts, its `ms_process` rows are read: a row
with a heartbeat younger than the stale limit and not stopped is a live instance, unless it is
on this host and its pid is gone (a predecessor that died) or it belongs to this very agent
(same host, its process started from a config with this work directory).
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
import sqlalchemy as sa

from prodagent.config import DEFAULT_CONFIG, AgentConfig, load_config
from prodagent.db.schema import ms_process
from prodagent.errors import ProdAgentError
from prodagent.messaging import queries
from prodagent.messaging.retry import TransactionRunner
from prodagent.runtime import pidfiles

REFUSED_EXIT = 3  # exit code of a component refused at start (another agent holds the name)


class AgentNameInUse(ProdAgentError):
    """Another agent with this name runs this component: starting would run its work twice."""


@dataclass(frozen=True)
class Holder:
    host: str
    pid: int
    heartbeat_age_s: float

    def describe(self) -> str:
        return f"host {self.host}, pid {self.pid}, heartbeat {self.heartbeat_age_s:.1f}s ago"


def foreign_holders(conn: sa.Connection, config: AgentConfig, component: str,
                    registered_before: int | None = None) -> list[Holder]:
    """Live instances of `component` under this agent's name that are not this agent's own
    (only those registered before process row `registered_before`, when given)."""
    now = time.time()
    host = socket.gethostname()
    query = queries.running_processes(config.agent.name, component).where(
        ms_process.c.heartbeat_at > now - config.messaging.stale_after_s)
    if registered_before is not None:
        query = query.where(ms_process.c.id < registered_before)
    rows = conn.execute(query).all()
    holders = []
    for row in rows:
        if row.host == host and (row.pid == os.getpid()
                                 or not _same_host_foreign(row.pid, row.started_at, config)):
            continue
        holders.append(Holder(row.host, row.pid, max(0.0, now - row.heartbeat_at)))
    return holders


def check_name_free(tx: TransactionRunner, config: AgentConfig, component: str,
                    registered_as: int | None = None) -> None:
    """Raise AgentNameInUse naming the live holder(s) of this agent name and component.

    Checked before registering and again after (`registered_as`: this process's row), against
    the rows registered earlier only: of two copies started at the same moment, both past the
    first check, the one registered second sees the first and gives way, whatever the order.
    Read through `tx`, so that a connection lost at start-up is retried like any other.
    """
    holders = tx.run(lambda conn: foreign_holders(conn, config, component, registered_as))
    if holders:
        raise AgentNameInUse(
            f"{component}: agent name '{config.agent.name}' is already running {component} elsewhere "
            f"({'; '.join(h.describe() for h in holders)}); refusing to start a second agent under "
            f"one name (work directory {config.workdir}). Give this agent its own agent.name, or stop the other."
        )


def _same_host_foreign(pid: int, started_at: float, config: AgentConfig) -> bool:
    """True if `pid` runs (not a recycled pid) and belongs to an agent with another work directory."""
    try:
        proc = psutil.Process(pid)
        if proc.create_time() > started_at + 1.0 or proc.status() == psutil.STATUS_ZOMBIE:
            return False  # gone: a predecessor that died, or its pid reused
        workdir = _workdir_of(proc)
    except psutil.Error:
        return False
    return workdir is None or workdir != config.workdir


def _workdir_of(proc: psutil.Process) -> Path | None:
    """The work directory of the config a component process was started with (None: unknown)."""
    cmdline = pidfiles.process_argv(proc.cmdline())
    path: str | None = None
    for i, arg in enumerate(cmdline):
        if arg == "--config" and i + 1 < len(cmdline):
            path = cmdline[i + 1]
        elif arg.startswith("--config="):
            path = arg.split("=", 1)[1]
    if path is None:
        path = proc.environ().get("PRODAGENT_CONFIG")
    try:
        if path is not None and not Path(path).is_absolute():
            path = str(Path(proc.cwd()) / path)
        return load_config(path or DEFAULT_CONFIG).workdir
    except (ProdAgentError, psutil.Error):
        return None
