"""Pid files of daemonized components: written by the daemon, never trusted blindly.

A pid file is believed only if its process exists and its command line is this component of
this agent's config; otherwise it is reported as stale.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import psutil

from prodagent.config import AgentConfig


def pid_path(config: AgentConfig, component: str) -> Path:
    return config.workdir / "run" / f"{component}.pid"


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


def _is_ours(pid: int, config: AgentConfig, component: str) -> bool:
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        cmdline = proc.cmdline()
    except psutil.Error:
        return False
    return component in cmdline and any("prodagent" in part or "prodAgentd" in part for part in cmdline)
