"""Shared pieces of the end-to-end tests on emulated sites: a Monte Carlo workflow, and a running
`prodmanager serve` with one agent (its own SQLite database) that is stopped afterwards."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from prodagent.demo.stack import AgentProcesses, Manager, write_agent_config


def mc_workflow(name: str, total: int, per_job: int | str, **extra: Any) -> dict[str, Any]:
    """A quick Monte Carlo request (minbias, merged in small files); `extra` overrides sections."""
    return {
        "kind": "montecarlo", "name": name,
        "payload": {"transformation": "pythia", "version": "8.317", "parameters": {"process": "minbias"}},
        "events": {"total": total, "per_job": per_job},
        "output": {"dataset": f"/E2E/{name}/GEN", "tier": "GEN"},
        "merge": {"enabled": True, "min_size_bytes": 1, "max_size_bytes": 1_000_000, "max_events": 50,
                  "max_wait_s": 1},
        **extra,
    }


@contextmanager
def manager_and_agent(tmp_path: Path, settings: dict[str, Any], sites: list[dict[str, Any]] | None = None,
                      batch: dict[str, Any] | None = None, shares: dict[str, float] | None = None,
                      ) -> Iterator[tuple[Manager, AgentProcesses, sa.Engine]]:
    manager = Manager(tmp_path / "pm", f"sqlite:///{tmp_path / 'pm' / 'pm.db'}", lease_s=120, shares=shares or {})
    manager.start()
    config = write_agent_config(tmp_path / "agent.yaml", tmp_path / "agent", manager,
                                db_url=f"sqlite:///{tmp_path / 'agent.db'}", sites=sites, batch=batch,
                                settings=settings)
    agent = AgentProcesses(config)
    engine = sa.create_engine(agent.config.db_url)
    try:
        assert agent.cli("db", "upgrade").returncode == 0
        yield manager, agent, engine
    finally:
        agent.stop()
        manager.stop()
        engine.dispose()
