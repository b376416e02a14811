"""Start, stop and inspect component daemons and their supervisor (what `prodAgentd` does).

`start` launches `python -m prodagent.runtime.daemon_main` per component (`prodAgentd start`
runs the same from a fork of itself); that process checks
that no other agent runs this component under this agent's name, then daemonizes with
python-daemon (detached, own session, work directory, closed descriptors), writes its pid file
and runs the component. The supervisor (`python -m prodagent.runtime.supervisor`, a daemon of
its own) is launched the same way. `stop` sends SIGTERM and returns only once the process is
gone: after the timeout it sends SIGKILL and waits again.
"""

from __future__ import annotations

import contextlib
import os
import random
import shlex
import signal
import socket
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import setproctitle

from prodagent.config import AgentConfig
from prodagent.runtime import pidfiles, watchlist
from prodagent.runtime.liveness import REFUSED_EXIT
from prodagent.runtime.logs import log_path

START_TIMEOUT_S = 30.0
KILL_WAIT_S = 10.0
SUPERVISOR = "supervisor"
OK_STATES = ("alive", "starting")


@dataclass(frozen=True)
class StartResult:
    ok: bool
    text: str
    refused: bool = False  # another agent runs this component under this name: do not retry
    skipped: bool = False  # no longer wanted by the time the lock was ours


@dataclass
class ComponentStatus:
    component: str
    pid: int | None
    alive: bool
    state: str  # alive | starting | stale | dead
    stale_pid_file: bool
    heartbeat_age_s: float | None
    pending: int
    dead_letters: int
    supervised: bool = False
    restarts: int = 0
    last_exit_at: float | None = None
    last_restart_at: float | None = None
    next_retry_at: float | None = None
    note: str | None = None  # refusal or last start failure, from the supervisor

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class SupervisorStatus:
    pid: int | None
    alive: bool
    started_at: float | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _launch(config: AgentConfig, module: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", module, "--config", str(config.source), *args],
        env=dict(os.environ), stdin=subprocess.DEVNULL, capture_output=True, text=True,
        timeout=START_TIMEOUT_S,
    )


def _launch_forked(config: AgentConfig, component: str) -> subprocess.CompletedProcess[str]:
    """What `_launch` does for a component, from a fork of this process instead of a new
    interpreter: the modules are imported already (a second of CPU per component saved).
    Only for a process with no other thread and no open database connection (`prodAgentd
    start`); the child detaches exactly as `daemon_main` run on its own does."""
    from prodagent.runtime import daemon_main

    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its stderr into the pipe, then daemon_main as if run by itself
        code = 1
        try:
            os.close(read_end)
            os.dup2(write_end, 2)
            devnull = os.open(os.devnull, os.O_RDWR)
            os.dup2(devnull, 0)
            os.dup2(devnull, 1)
            sys.stderr = os.fdopen(2, "w", closefd=False)
            random.seed()  # not the parent's sequence, nor its siblings'
            # The command line it would have had on its own: what `ps` shows operators and
            # what the pid-file check recognises a component by.
            setproctitle.setproctitle(shlex.join([sys.executable, "-m", "prodagent.runtime.daemon_main",
                                                  "--config", str(config.source), component]))
            code = daemon_main.main(["--config", str(config.source), component])
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:  # noqa: BLE001 - whatever happens, the child must not return
            traceback.print_exc()
        finally:
            with contextlib.suppress(Exception):
                sys.stderr.flush()
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "r", errors="replace") as pipe:
        err = pipe.read()
    _pid, status = os.waitpid(pid, 0)
    return subprocess.CompletedProcess([component], os.waitstatus_to_exitcode(status), "", err)


def _wait_pid(config: AgentConfig, name: str) -> int | None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        state = pidfiles.read_pid(config, name)
        if state.alive:
            return state.pid
        time.sleep(0.1)
    return None


def start(config: AgentConfig, component: str,
          still_wanted: Callable[[], bool] | None = None, fork: bool = False) -> StartResult:
    """Start one component daemon unless it runs; `still_wanted` is asked once the lock is held;
    `fork`: launched from a fork of this process (see `_launch_forked`)."""
    if config.source is None:
        return StartResult(False, "the configuration must come from a file to start daemons")
    with pidfiles.locked(config, component):
        if still_wanted is not None and not still_wanted():
            return StartResult(False, "no longer wanted", skipped=True)
        state = pidfiles.read_pid(config, component)
        if state.alive:
            return StartResult(True, f"already running (pid {state.pid})")
        note = f"stale pid file (pid {state.pid} gone) replaced; " if state.stale else ""
        pidfiles.pid_path(config, component).unlink(missing_ok=True)
        proc = (_launch_forked(config, component) if fork
                else _launch(config, "prodagent.runtime.daemon_main", component))
        if proc.returncode == REFUSED_EXIT:
            return StartResult(False, f"{note}refused: {proc.stderr.strip()}", refused=True)
        if proc.returncode != 0:
            return StartResult(False, f"{note}failed to start: {proc.stderr.strip() or proc.stdout.strip()}")
        pid = _wait_pid(config, component)
        if pid is None:
            return StartResult(False, f"{note}did not come up; see {log_path(config, component)}")
        return StartResult(True, f"{note}started (pid {pid})")


def stop(config: AgentConfig, component: str, timeout_s: float | None = None) -> tuple[bool, str]:
    """SIGTERM, wait until the process is gone; after `timeout_s`, SIGKILL and wait again."""
    timeout_s = config.supervisor.stop_timeout_s if timeout_s is None else timeout_s
    with pidfiles.locked(config, component):
        state = pidfiles.read_pid(config, component)
        if not state.alive or state.pid is None:
            pidfiles.pid_path(config, component).unlink(missing_ok=True)
            return True, "stale pid file removed" if state.stale else "not running"
        pid = state.pid
        _signal(pid, signal.SIGTERM)
        _signal(pid, signal.SIGCONT)  # a frozen (stopped) process must wake up to hear it
        if pidfiles.wait_gone(pid, timeout_s):
            text = f"stopped (pid {pid})"
        else:
            _signal(pid, signal.SIGKILL)
            if not pidfiles.wait_gone(pid, KILL_WAIT_S):
                return False, f"pid {pid} still there {KILL_WAIT_S:.0f}s after SIGKILL"
            text = f"killed after {timeout_s:g}s (pid {pid})"
        pidfiles.pid_path(config, component).unlink(missing_ok=True)
        return True, text


def _signal(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)


def start_supervisor(config: AgentConfig) -> tuple[bool, str]:
    """Start the supervisor daemon of this work directory unless it runs."""
    if config.source is None:
        return False, "the configuration must come from a file to start daemons"
    with pidfiles.locked(config, SUPERVISOR):
        state = pidfiles.read_pid(config, SUPERVISOR)
        if state.alive:
            return True, f"running (pid {state.pid})"
        pidfiles.pid_path(config, SUPERVISOR).unlink(missing_ok=True)
        proc = _launch(config, "prodagent.runtime.supervisor")
        if proc.returncode != 0:
            return False, f"failed to start: {proc.stderr.strip() or proc.stdout.strip()}"
        pid = _wait_pid(config, SUPERVISOR)
        if pid is None:
            return False, f"did not come up; see {log_path(config, SUPERVISOR)}"
        return True, f"started (pid {pid})"


def supervisor_status(config: AgentConfig) -> SupervisorStatus:
    state = pidfiles.read_pid(config, SUPERVISOR)
    record = watchlist.read_record(config)
    started = record.started_at if record and record.pid == state.pid else None
    return SupervisorStatus(pid=state.pid, alive=state.alive, started_at=started)


def status(config: AgentConfig, components: list[str]) -> list[ComponentStatus]:
    from prodagent.runtime.runner import open_service

    service = open_service(config, pool_size=1)
    try:
        pending: dict[str, int] = {}
        for row in service.queue_stats():
            pending[row["component"]] = pending.get(row["component"], 0) + row["pending"]
        dead = service.dead_letter_counts()
        beats = service.tx.run(lambda conn: _live_heartbeats(conn, config.agent.name))
    finally:
        service.engine.dispose()
    record = watchlist.read_record(config)
    wanted = set(watchlist.wanted(config))
    host = socket.gethostname()
    now = time.time()
    result = []
    for name in components:
        state = pidfiles.read_pid(config, name)
        beat = beats.get((name, host, state.pid)) if state.alive else None
        age = round(now - beat, 1) if beat is not None else None
        if not state.alive:
            condition = "dead"
        elif age is None:
            condition = "starting"  # alive, not registered yet (waiting for the database)
        else:
            condition = "stale" if age > config.messaging.stale_after_s else "alive"
        rec = record.components.get(name) if record else None
        result.append(ComponentStatus(
            component=name, pid=state.pid, alive=state.alive, state=condition, stale_pid_file=state.stale,
            heartbeat_age_s=age, pending=pending.get(name, 0), dead_letters=dead.get(name, 0),
            supervised=name in wanted,
            restarts=rec.restarts if rec else 0,
            last_exit_at=rec.last_exit_at if rec else None,
            last_restart_at=rec.last_restart_at if rec else None,
            next_retry_at=rec.next_retry_at if rec and not state.alive else None,
            note=(rec.refused or rec.last_error) if rec else None,
        ))
    return result


def _live_heartbeats(conn: Any, agent: str) -> dict[tuple[str, str, int], float]:
    """{(component, host, pid): heartbeat} of this agent's instances not marked stopped."""
    from prodagent.messaging import queries

    rows = conn.execute(queries.running_processes(agent))
    return {(r.component, r.host, r.pid): r.heartbeat_at for r in rows}
