"""Fixtures for messaging tests: an agent config on a real database, with the test components."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from prodagent.config import AgentConfig, load_config
from prodagent.messaging.service import MessageService
from prodagent.runtime.runner import declare_subscriptions, open_service, wait_for_database
from tests.agent_helpers import write_config
from tests.messaging.components import PLUGINS, metadata


@dataclass
class Agent:
    path: Path
    config: AgentConfig
    service: MessageService


def make_agent(tmp_path: Path, db_url: str, name: str = "t1", enabled: list[str] | None = None,
               messaging: dict[str, Any] | None = None) -> Agent:
    raw = {
        "agent": {"name": name, "workdir": str(tmp_path / name)},
        "database": {"url": db_url, "connect_retries": 60, "retry_wait_s": 0.5},
        "messaging": {"poll_max_s": 0.1, "heartbeat_s": 0.5, **(messaging or {})},
        "components": {"enabled": enabled or ["Recorder", "Sink"], "plugins": PLUGINS},
    }
    path = write_config(tmp_path / f"{name}.yaml", raw)
    config = load_config(path)
    wait_for_database(config)
    service = open_service(config)
    declare_subscriptions(config, service)
    metadata.create_all(service.engine)
    return Agent(path, config, service)


@pytest.fixture
def agent(db_url: str, tmp_path: Path) -> Iterator[Agent]:
    made = make_agent(tmp_path, db_url)
    yield made
    made.service.engine.dispose()
