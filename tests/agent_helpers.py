"""Helpers for tests that run real component processes from a real config file."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent


def write_config(path: Path, raw: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(raw))
    return path


def env() -> dict[str, str]:
    out = dict(os.environ)
    out["PYTHONPATH"] = str(ROOT) + os.pathsep + out.get("PYTHONPATH", "")
    out.pop("PRODAGENT_DB_URL", None)
    return out


def prodagentd(config: Path, *args: str, check: bool = False, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "prodagent.cli.daemon_cli", "--config", str(config), *args],
        env=env(), capture_output=True, text=True, timeout=timeout, check=check,
    )


def run_component(config: Path, component: str, log: Path | None = None) -> subprocess.Popen[bytes]:
    """`prodAgentd run COMPONENT` as a child process (foreground mode)."""
    out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115 - handed to the child
    return subprocess.Popen(
        [sys.executable, "-m", "prodagent.cli.daemon_cli", "--config", str(config), "run", component],
        env=env(), stdout=out, stderr=subprocess.STDOUT,
    )


def wait_until(predicate: Callable[[], Any], timeout: float = 60, interval: float = 0.1, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
