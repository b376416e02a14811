"""Logging for components: a rotating file per component in the agent's work directory."""

from __future__ import annotations

import logging
import logging.handlers
import sys
from pathlib import Path

from prodagent.config import AgentConfig

FORMAT = "%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s"


def log_path(config: AgentConfig, component: str) -> Path:
    return config.workdir / "logs" / f"{component}.log"


def setup_logging(config: AgentConfig, component: str, to_stderr: bool = False) -> Path:
    path = log_path(config, component)
    path.parent.mkdir(parents=True, exist_ok=True)
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler: logging.Handler = logging.handlers.RotatingFileHandler(
        path, maxBytes=config.logging.max_bytes, backupCount=config.logging.backups
    )
    handler.setFormatter(logging.Formatter(FORMAT))
    root.addHandler(handler)
    if to_stderr:
        console = logging.StreamHandler(sys.stderr)
        console.setFormatter(logging.Formatter(FORMAT))
        root.addHandler(console)
    root.setLevel(config.logging.level)
    return path
