"""Start, stop and inspect component daemons (what `prodAgentd` does).

`start` launches `python -m prodagent.runtime.daemon_main` per component; that process
daemonizes with python-daemon (detached, own session, work directory, closed descriptors),
writes its pid file and runs the component. `stop` sends SIGTERM, waits, then SIGKILL.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any

from prodagent.config import AgentConfig
from prodagent.runtime import pidfiles
from prodagent.runtime.logs import log_path

START_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 10.0


@dataclass
class ComponentStatus:
    component: str
    pid: int | None
    alive: bool
    stale_pid_file: bool
    heartbeat_age_s: float | None
    pending: int
    dead_letters: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def start(config: AgentConfig, component: str) -> tuple[bool, str]:
    state = pidfiles.read_pid(config, component)
    if state.alive:
        return True, f"already running (pid {state.pid})"
    note = f"stale pid file (pid {state.pid} gone) replaced; " if state.stale else ""
    if config.source is None:
        return False, "the configuration must come from a file to start daemons"
    pidfiles.pid_path(config, component).unlink(missing_ok=True)
    env = dict(os.environ)
    proc = subprocess.run(
        [sys.executable, "-m", "prodagent.runtime.daemon_main", "--config", str(config.source), component],
        env=env, capture_output=True, text=True, timeout=START_TIMEOUT_S,
    )
    if proc.returncode != 0:
        return False, f"{note}failed to start: {proc.stderr.strip() or proc.stdout.strip()}"
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        state = pidfiles.read_pid(config, component)
        if state.alive:
            return True, f"{note}started (pid {state.pid})"
        time.sleep(0.1)
    return False, f"{note}did not come up; see {log_path(config, component)}"


def stop(config: AgentConfig, component: str, timeout_s: float = STOP_TIMEOUT_S) -> tuple[bool, str]:
    state = pidfiles.read_pid(config, component)
    if not state.alive or state.pid is None:
        pidfiles.pid_path(config, component).unlink(missing_ok=True)
        return True, "stale pid file removed" if state.stale else "not running"
    os.kill(state.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not pidfiles.read_pid(config, component).alive:
            pidfiles.pid_path(config, component).unlink(missing_ok=True)
            return True, f"stopped (pid {state.pid})"
        time.sleep(0.05)
    os.kill(state.pid, signal.SIGKILL)
    pidfiles.pid_path(config, component).unlink(missing_ok=True)
    return True, f"killed after {timeout_s:.0f}s (pid {state.pid})"


def status(config: AgentConfig, components: list[str]) -> list[ComponentStatus]:
    from prodagent.runtime.runner import open_service

    service = open_service(config, pool_size=1)
    try:
        pending: dict[str, int] = {}
        for row in service.queue_stats():
            pending[row["component"]] = pending.get(row["component"], 0) + row["pending"]
        dead = service.dead_letter_counts()
        beats = service.tx.run(lambda conn: _last_heartbeats(conn, config.agent.name))
    finally:
        service.engine.dispose()
    now = time.time()
    result = []
    for name in components:
        state = pidfiles.read_pid(config, name)
        beat = beats.get(name)
        result.append(ComponentStatus(
            component=name, pid=state.pid, alive=state.alive, stale_pid_file=state.stale,
            heartbeat_age_s=round(now - beat, 1) if beat else None,
            pending=pending.get(name, 0), dead_letters=dead.get(name, 0),
        ))
    return result


def _last_heartbeats(conn: Any, agent: str) -> dict[str, float]:
    import sqlalchemy as sa

    from prodagent.db.schema import ms_process

    rows = conn.execute(
        sa.select(ms_process.c.component, sa.func.max(ms_process.c.heartbeat_at))
        .where(ms_process.c.agent == agent)
        .group_by(ms_process.c.component)
    )
    return {component: beat for component, beat in rows}
