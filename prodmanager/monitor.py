"""What the web monitor shows, computed from live state: request pages with progress and alert
badges, a request's time series, error grid, files and "why is this not done?"
(`prodmanager.why_not_done`), jobs (allocations), agents and sites.

Each method returns plain JSON-able dicts; the HTML pages (`prodmanager.web`) and their JSON
twins (`/api/v1/monitor/...`) render the same dict, so every number on a page has an API twin.
Visibility is the API's: `auth.require_role` / `require_visible` (a requester sees only its own
requests; another's answers 404).
"""

from __future__ import annotations

import json
import re
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from prodmanager import chain, runs, sizing_reports, why_not_done
from prodmanager.auth import Principal, Role, require_role, require_visible
from prodmanager.counters import counters_for
from prodmanager.db import job_queries as jq
from prodmanager.db import monitor_queries as mq
from prodmanager.db import queries as q
from prodmanager.db.engine import Database
from prodmanager.errors import NotFound
from prodmanager.states import ACQUIRABLE, RequestState
from prodmanager.why_not_done import components_of

PAGE_SIZE = 50  # jobs per page
REQUESTS_PER_PAGE = 25  # each costs a read of its allocations' counters
SITE_WINDOW_S = 6 * 3600.0


@dataclass(frozen=True)
class AlertLimits:
    """When a request gets a badge: not pulled / no progress for this long, failure rate above
    this (with at least `min_finished` finished jobs)."""

    stale_s: float = 30 * 60.0
    failure_rate: float = 0.5
    min_finished: int = 3


class Monitor:
    def __init__(self, db: Database, limits: AlertLimits | None = None) -> None:
        self.db = db
        self.limits = limits or AlertLimits()

    # --- requests -------------------------------------------------------------------------------

    def requests(
        self,
        principal: Principal,
        states: list[str] | None = None,
        owner: str | None = None,
        name: str | None = None,
        page: int = 1,
    ) -> dict[str, Any]:
        require_role(principal, Role.REQUESTER)
        if not principal.is_operator:
            owner = principal.name  # a requester's list is its own requests, whatever it asks
        states = [s for s in states or [] if s in RequestState.__members__.values()] or None
        page = max(page, 1)
        now = time.time()

        def work(conn: sa.Connection) -> dict[str, Any]:
            total, rows = mq.request_page(
                conn, states, owner, name, (page - 1) * REQUESTS_PER_PAGE, REQUESTS_PER_PAGE
            )
            counters = counters_for(conn, list(rows), now)
            seen = mq.activity(conn, [int(r.id) for r in rows])
            items = [
                self._row(r, counters[int(r.id)], seen.get(int(r.id)), now, _runs_of(conn, r, now))
                for r in rows
            ]
            return {
                "items": items,
                "total": total,
                "page": page,
                "pages": max(1, -(-total // REQUESTS_PER_PAGE)),
                "filters": {"state": states or [], "owner": owner, "name": name},
            }

        return self.db.read(work)

    def _row(
        self, r: sa.Row[Any], c: Any, seen: tuple[float, float] | None, now: float,
        run_list: list[runs.Run],
    ) -> dict[str, Any]:
        counters = c.model_dump()
        done, failed = c.allocations.get("done", 0), c.allocations.get("failed", 0)
        finished = done + failed
        changed_at, progress_at = seen or (0.0, 0.0)
        # Pulled at least once: some allocation is or was leased.
        pulled = c.events_allocated > 0 or finished > 0
        pulled_at = changed_at if pulled else 0.0
        since = max(progress_at, float(r.created_at))
        alerts = []
        if failed and not done:
            alerts.append("no success yet")
        if finished >= self.limits.min_finished and failed / finished > self.limits.failure_rate:
            alerts.append("failure rate high")
        if r.state in ACQUIRABLE and not pulled_at and now - r.created_at > self.limits.stale_s:
            alerts.append(f"not pulled for {int((now - r.created_at) // 60)} min")
        elif r.state in ACQUIRABLE and pulled_at and now - since > self.limits.stale_s:
            alerts.append(f"no progress for {int((now - since) // 60)} min")
        total = max(int(r.total_events), 1)
        return {
            "id": int(r.id),
            "name": r.name,
            "kind": r.kind,
            "owner": r.owner,
            "state": r.state,
            "priority": int(r.priority),
            "total_jobs": int(r.total_jobs),
            "created_at": float(r.created_at),
            "last_pull": pulled_at or None,
            "last_progress": progress_at or None,
            "failure_rate": round(failed / finished, 4) if finished else None,
            "progress_pct": {
                "allocated": _pct(c.events_allocated, total),
                "produced": _pct(c.events_produced, total),
                "merged": _pct(c.events_merged, total),
            },
            "counters": counters,
            "files_progress": _files_progress(run_list) if r.kind == "processing" else None,
            "alerts": alerts,
        }

    def request(self, principal: Principal, request_id: int) -> dict[str, Any]:
        """Everything on a request's page."""
        require_role(principal, Role.REQUESTER)
        now = time.time()

        def work(conn: sa.Connection) -> dict[str, Any]:
            row = q.get_request(conn, request_id)
            if row is None:
                raise NotFound(f"no request {request_id}")
            require_visible(principal, request_id, row.owner)
            counters = counters_for(conn, [row], now)[row.id]
            seen = mq.activity(conn, [request_id]).get(request_id)
            run_list = _runs_of(conn, row, now)
            summary = self._row(row, counters, seen, now, run_list)
            linked = _chain_of(conn, row, principal)
            series = mq.finished_series(conn, request_id)
            history = [
                {"from": h.from_state, "to": h.to_state, "actor": h.actor, "reason": h.reason,
                 "at": h.at}
                for h in q.history(conn, request_id)
            ]
            files = [dict(f._mapping) for f in mq.files_of(conn, request_id, None, 200)]
            grid = _error_grid(jq.error_grid(conn, request_id))
            why = why_not_done.explain(conn, row, counters, now, run_list, linked["producer"])
            spec = json.loads(row.spec)
            sized = sizing_reports.of_request(conn, request_id) if sizing_reports.is_auto(spec) else []
            return {
                **summary,
                "sites": json.loads(row.sites),
                "series": _series(series),
                "errors": grid,
                "files": files,
                "history": history,
                "why": why,
                "runs": [{**r.info().model_dump(), "decisions": r.decisions()} for r in run_list],
                "chain": linked,
                "sizing": [s.model_dump() for s in sized],
            }

        return self.db.read(work)

    # --- jobs -----------------------------------------------------------------------------------

    def jobs(
        self,
        principal: Principal,
        request_id: int | None = None,
        state: str | None = None,
        agent: str | None = None,
        job_state: str | None = None,
        error: str | None = None,
        page: int = 1,
        site: str | None = None,
        error_class: str | None = None,
        exit_code: int | None = None,
    ) -> dict[str, Any]:
        require_role(principal, Role.REQUESTER)
        owner = None if principal.is_operator else principal.name
        matching = jq.allocations_matching(site, error_class, exit_code)
        page = max(page, 1)

        def work(conn: sa.Connection) -> dict[str, Any]:
            rows = mq.allocation_page(
                conn, request_id, owner, [state] if state else None, agent, job_state, error,
                matching, (page - 1) * PAGE_SIZE, PAGE_SIZE + 1,
            )
            items = [_job(r) for r in rows[:PAGE_SIZE]]
            return {
                "items": items,
                "page": page,
                "more": len(rows) > PAGE_SIZE,
                "filters": {"request": request_id, "state": state, "agent": agent,
                            "job_state": job_state, "error": error, "site": site,
                            "error_class": error_class, "exit_code": exit_code},
            }

        return self.db.read(work)

    def job(self, principal: Principal, allocation_id: int) -> dict[str, Any]:
        require_role(principal, Role.REQUESTER)

        def work(conn: sa.Connection) -> dict[str, Any]:
            row = mq.allocation_with_request(conn, allocation_id)
            if row is None:
                raise NotFound(f"no job {allocation_id}")
            try:
                require_visible(principal, int(row.request_id), row.owner)
            except NotFound:
                raise NotFound(f"no job {allocation_id}") from None
            files = [dict(f._mapping) for f in mq.files_of(conn, None, allocation_id, 100)]
            events = [
                {**{k: v for k, v in dict(e._mapping).items() if k not in ("id", "resources")},
                 "resources": json.loads(e.resources or "{}")}
                for e in jq.events_of(conn, allocation_id)
            ]
            logs = [dict(entry._mapping) for entry in jq.logs_of(conn, allocation_id)]
            return {**_job(row), "files": files, "events": events, "logs": logs,
                    "attempts_seen": sorted({e["retry"] for e in events}),
                    "input_files": json.loads(row.input_files) if row.input_files else []}

        return self.db.read(work)

    # --- agents and sites -----------------------------------------------------------------------

    def agents(self, principal: Principal) -> dict[str, Any]:
        require_role(principal, Role.OPERATOR)
        now = time.time()

        def work(conn: sa.Connection) -> dict[str, Any]:
            load = _by_agent(mq.outcomes_by_agent(conn, now - SITE_WINDOW_S, now))
            items = []
            for a in q.list_agents(conn, now):
                items.append({
                    "name": a.name,
                    "sites": json.loads(a.sites),
                    "capacity": int(a.capacity),
                    "held": int(a.held),
                    "free": max(int(a.capacity) - int(a.held), 0),
                    "last_pull": float(a.last_seen),
                    "last_pull_age_s": round(now - float(a.last_seen), 1),
                    "jobs": load.get(a.name, {}),
                    "components": components_of(a),
                    "status_age_s": round(now - float(a.status_at), 1) if a.status_at else None,
                })
            return {"items": items, "window_s": SITE_WINDOW_S}

        return self.db.read(work)

    def sites(self, principal: Principal) -> dict[str, Any]:
        """Per site: slots (capacity of the agents serving it, shared evenly among an agent's
        sites), running and queued jobs, success rate over the window."""
        agents = self.agents(principal)
        acc: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        for a in agents["items"]:
            share = 1.0 / max(len(a["sites"]), 1)
            for site in a["sites"] or ["(any)"]:
                s = acc[site]
                s["agents"] += 1
                s["slots"] += a["capacity"] * share
                s["held"] += a["held"] * share
                s["running"] += a["jobs"].get("running", 0) * share
                s["done"] += a["jobs"].get("done", 0) * share
                s["failed"] += a["jobs"].get("failed", 0) * share
        items = []
        for site, s in sorted(acc.items()):
            finished = s["done"] + s["failed"]
            items.append({
                "site": site,
                "agents": int(s["agents"]),
                "slots": round(s["slots"]),
                "running": round(s["running"]),
                "queued": round(max(s["held"] - s["running"], 0)),
                "success_rate": round(s["done"] / finished, 4) if finished else None,
            })
        return {"items": items, "window_s": SITE_WINDOW_S}


# --- helpers ----------------------------------------------------------------------------------


def _runs_of(conn: sa.Connection, row: sa.Row[Any], now: float) -> list[runs.Run]:
    return runs.summarise(conn, int(row.id), now) if row.kind == "processing" else []


def _files_progress(run_list: list[runs.Run]) -> dict[str, Any]:
    """Input files by state, and the shares the files bar shows (of all files)."""
    counts = runs.file_totals(run_list)
    total = sum(counts.values())
    shown = ("processed", "given_up", "failed", "assigned")
    return {"total": total, "counts": counts, "pct": {s: _pct(counts[s], total) for s in shown}}


def _chain_of(conn: sa.Connection, row: sa.Row[Any], principal: Principal) -> dict[str, Any]:
    """The request's producer (a chained request's input) and its consumers, by id and state.
    The producer is named whoever owns it (the request waits for it); a requester sees only its
    own consumers, as it sees only its own requests."""
    spec = json.loads(row.spec)
    dataset = chain.input_dataset(spec)
    producer = chain.producer_of(conn, dataset) if dataset else None
    return {
        "input_dataset": dataset,
        "producer": {"id": int(producer.id), "state": producer.state} if producer else None,
        "consumers": [{"id": int(c.id), "state": c.state}
                      for c in chain.consumers_of(conn, spec["output"]["dataset"])
                      if principal.is_operator or c.owner == principal.name],
    }

_CLASS = re.compile(r"^([A-Za-z0-9_.-]{1,64}):")  # agents' failure reasons start with the class


def _error_grid(rows: Any) -> dict[str, Any]:
    """Failed attempts by error class (rows) and site (columns), counts and % of all."""
    cells: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for r in rows:
        cells[r.error_class][r.site or "(none)"] += int(r.n)
    columns = sorted({a for row in cells.values() for a in row})
    total = sum(sum(v.values()) for v in cells.values())
    return {
        "columns": columns,
        "rows": [
            {"error": e, "cells": {a: {"n": n, "pct": _pct(n, total)} for a, n in row.items()},
             "total": sum(row.values())}
            for e, row in sorted(cells.items(), key=lambda kv: -sum(kv[1].values()))
        ],
        "total": total,
    }


def _series(rows: Any) -> dict[str, list[float]]:
    """Cumulative done/failed jobs and produced events over time."""
    t: list[float] = []
    done: list[float] = []
    failed: list[float] = []
    events: list[float] = []
    d = f = e = 0
    for at, state, n, ev in rows:
        if state == "done":
            d, e = d + n, e + ev
        elif state == "failed":
            f += n
        if t and t[-1] == at:
            done[-1], failed[-1], events[-1] = d, f, e
        else:
            t.append(at)
            done.append(d)
            failed.append(f)
            events.append(e)
    return {"t": t, "jobs_done": done, "jobs_failed": failed, "events_produced": events}


def _by_agent(rows: Any) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = defaultdict(dict)
    for r in rows:
        out[r.agent][r.state] = out[r.agent].get(r.state, 0) + int(r.n)
    return out


def _job(r: sa.Row[Any]) -> dict[str, Any]:
    return {
        "id": int(r.id),
        "request_id": int(r.request_id),
        "request_name": r.request_name,
        "job_index": int(r.job_index),
        "state": r.state,
        "job_state": r.job_state,
        "agent": r.agent,
        "attempts": int(r.lease_epoch),
        "first_event": int(r.first_event),
        "n_events": int(r.n_events),
        "events_done": int(r.events_done),
        "seed": int(r.seed),
        "reason": r.reason,
        "error_class": _class_of(r.reason) if r.state == "failed" else None,
        "updated_at": float(r.updated_at),
    }


def _class_of(reason: str | None) -> str | None:
    found = _CLASS.match(reason or "")
    return found.group(1) if found else None


def _pct(n: float, total: float) -> float:
    return round(100.0 * n / total, 1) if total else 0.0
