"""Pid files of daemonized components: written by the daemon, never trusted blindly.

A pid file is believed only if its process exists and its command line is this component of
this agent's config; otherwise it is reported as stale. Starting and stopping one component
hold its lock file, so the supervisor and an operator never start it twice, nor start it while
it is being stopped.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shlex
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psutil

from prodagent.config import AgentConfig


def pid_path(config: AgentConfig, component: str) -> Path:
    return config.workdir / "run" / f"{component}.pid"


@contextmanager
def locked(config: AgentConfig, name: str) -> Iterator[None]:
    """Hold run/<name>.lock (an exclusive flock, released when its holder dies)."""
    path = config.workdir / "run" / f"{name}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def gone(pid: int) -> bool:
    """True once `pid` has exited (a zombie waiting for its parent to reap it counts as gone)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True
    except psutil.Error:
        return False


def wait_gone(pid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while not gone(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


@dataclass(frozen=True)
class PidState:
    pid: int | None
    alive: bool
    stale: bool  # a pid file whose process is gone (or is something else)


def write_pid(config: AgentConfig, component: str) -> None:
    path = pid_path(config, component)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(f"{os.getpid()}\n")
    tmp.replace(path)


def remove_pid(config: AgentConfig, component: str) -> None:
    path = pid_path(config, component)
    try:
        if path.read_text().strip() == str(os.getpid()):
            path.unlink()
    except OSError:
        pass


def read_pid(config: AgentConfig, component: str) -> PidState:
    path = pid_path(config, component)
    try:
        pid = int(path.read_text().strip())
    except (OSError, ValueError):
        return PidState(None, False, path.exists())
    return PidState(pid, _is_ours(pid, config, component), not _is_ours(pid, config, component))


def process_argv(cmdline: list[str]) -> list[str]:
    """A process's arguments from its command line as psutil reads it. A component launched from
    a fork of `prodAgentd start` set its title to the command line it would have had (quoted as
    a shell would), which reads back as one string padded with empty ones: split again."""
    parts = [part for part in cmdline if part]
    if len(parts) == 1 and " " in parts[0]:
        with contextlib.suppress(ValueError):
            return shlex.split(parts[0])
    return parts


def _is_ours(pid: int, config: AgentConfig, component: str) -> bool:
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        cmdline = process_argv(proc.cmdline())
    except psutil.Error:
        return False
    if f"prodagent.runtime.{component}" in cmdline:  # the supervisor: python -m prodagent.runtime.supervisor
        return True
    return component in cmdline and any("prodagent" in part or "prodAgentd" in part for part in cmdline)
