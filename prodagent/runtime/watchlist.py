"""What the supervisor watches, and what it has done: two small JSON files in the run directory.

`run/supervised.json` lists the components an operator asked to run (`start` adds, `stop`
removes, under `run/supervised.lock`); the supervisor brings back only these. `run/supervisor.json`
is the supervisor's record for `status`: per component, restarts, last exit, last restart, next
retry, and why a start was refused or failed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from prodagent.config import AgentConfig
from prodagent.runtime.pidfiles import locked


def _wanted_path(config: AgentConfig) -> Path:
    return config.workdir / "run" / "supervised.json"


def _record_path(config: AgentConfig) -> Path:
    return config.workdir / "run" / "supervisor.json"


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _write_json(path: Path, value: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(json.dumps(value, indent=1))
    tmp.replace(path)


def wanted(config: AgentConfig) -> list[str]:
    value = _read_json(_wanted_path(config))
    return list(value.get("components", [])) if isinstance(value, dict) else []


def update_wanted(config: AgentConfig, add: Sequence[str] = (), remove: Sequence[str] = ()) -> list[str]:
    """Add and remove names; returns the new list."""
    with locked(config, "supervised"):
        names = [n for n in wanted(config) if n not in remove]
        names += [n for n in add if n not in names]
        _write_json(_wanted_path(config), {"components": names})
        return names


@dataclass
class Record:
    """The supervisor's account of one component (times are Unix seconds)."""

    restarts: int = 0
    backoff_s: float = 0.0
    down_since: float | None = None
    last_exit_at: float | None = None
    last_exit_pid: int | None = None
    last_restart_at: float | None = None
    next_retry_at: float | None = None
    refused: str | None = None  # another agent holds the name: not retried
    last_error: str | None = None


@dataclass
class SupervisorRecord:
    pid: int = 0
    started_at: float = 0.0
    components: dict[str, Record] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def write_record(config: AgentConfig, record: SupervisorRecord) -> None:
    _write_json(_record_path(config), record.as_dict())


def read_record(config: AgentConfig) -> SupervisorRecord | None:
    raw = _read_json(_record_path(config))
    if not isinstance(raw, dict):
        return None
    try:
        return SupervisorRecord(
            pid=int(raw["pid"]), started_at=float(raw["started_at"]),
            components={k: Record(**v) for k, v in raw.get("components", {}).items()},
        )
    except (KeyError, TypeError, ValueError):
        return None
