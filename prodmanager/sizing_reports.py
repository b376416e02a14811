"""Automatic job sizing that agents push (`POST /agents/{agent}/sizing`), for `prodrequest show`.

A request with `events.per_job: auto` is sized by each agent that works on it, from its own
scouts and finished jobs (prodagent.jobs.sizing). ProdMgrInterface pushes an estimate when it
changed (state, events per job, memory, time, the figures behind them, the formula, why it
paused); ProdManager keeps the latest per request and agent (`pm_sizing`) and
`GET /requests/{id}` returns them in `RequestDetail.sizing`.

An agent may report only for requests it holds or held allocations of, and only for requests
sized automatically; a push naming any other request is refused whole, storing nothing.
"""

from __future__ import annotations

import json
import time
from typing import Any

import sqlalchemy as sa

from prodmanager.auth import Principal
from prodmanager.db import sizing_queries as sq
from prodmanager.db.engine import Database
from prodmanager.errors import Forbidden
from prodmanager.guard import invalid_input
from prodmanager.models import AgentSizing, SizingAck, SizingReport
from prodmanager.pull_service import PullService
from prodrequest.loader import MAX_ERRORS


class SizingReports:
    def __init__(self, db: Database, pull: PullService) -> None:
        self.db = db
        self.pull = pull

    def report(self, principal: Principal, agent_name: str, body: SizingReport) -> SizingAck:
        self.pull.check_agent(principal, agent_name)
        now = time.time()

        def work(conn: sa.Connection) -> int:
            check(conn, agent_name, body)
            return sq.store(conn, agent_name, body.sizings, now)

        return SizingAck(accepted=self.db.transaction(work))


def check(conn: sa.Connection, agent_name: str, body: SizingReport) -> None:
    """Forbidden if a request is not the agent's work; InvalidInput if one is not sized
    automatically (its workflow's `events.per_job` is not `auto`)."""
    ids = [s.request_id for s in body.sizings]
    foreign = sorted(set(ids) - sq.worked_on(conn, agent_name, ids))
    if foreign:
        shown = ", ".join(map(str, foreign[:20])) + (" ..." if len(foreign) > 20 else "")
        raise Forbidden(
            f"agent '{agent_name}' holds no allocation of request(s) {shown}; an agent reports "
            "the sizing of its own work only",
            requests=foreign[:MAX_ERRORS],
        )
    specs = sq.specs(conn, ids)
    errors = [
        {"path": f"sizings[{i}].request_id",
         "message": f"request {rid} does not size its jobs automatically (events.per_job is not auto)"}
        for i, rid in enumerate(ids) if not is_auto(specs.get(rid, {}))
    ]
    if errors:
        raise invalid_input(errors[:MAX_ERRORS], len(errors))


def is_auto(spec: dict[str, Any]) -> bool:
    events = spec.get("events")
    return isinstance(events, dict) and events.get("per_job") == "auto"


def of_request(conn: sa.Connection, request_id: int) -> list[AgentSizing]:
    """The request's estimates as its agents last pushed them, one per agent."""
    return [
        AgentSizing.model_construct(
            request_id=int(r.request_id), agent=r.agent, state=r.state, events_per_job=r.events_per_job,
            memory_mb=r.memory_mb, time_s=r.time_s, figures=json.loads(r.figures), formula=r.formula,
            reason=r.reason, computed_at=r.computed_at, received_at=r.received_at,
        )
        for r in sq.of_request(conn, request_id)
    ]
