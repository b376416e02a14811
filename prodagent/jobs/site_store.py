"""All SQL of site health: breaker states and their history, per-attempt results, excluded nodes."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from prodagent.db.schema import pa_node_exclusion, pa_site_event, pa_site_health, pa_site_result
from prodagent.jobs import site_states

H, E, R, X = pa_site_health, pa_site_event, pa_site_result, pa_node_exclusion


@dataclass(frozen=True)
class Tally:
    """A site's ended attempts in a window: successes, site-caused failures, other failures."""

    ok: int = 0
    site_fault: int = 0
    other: int = 0

    @property
    def judged(self) -> int:
        return self.ok + self.site_fault

    @property
    def fault_rate(self) -> float:
        return self.site_fault / self.judged if self.judged else 0.0


def record_results(conn: sa.Connection, rows: Sequence[dict[str, Any]]) -> None:
    """Rows of (agent, site, node, at, ok, site_fault, wall_s), one per ended attempt."""
    if rows:
        conn.execute(R.insert(), list(rows))


def tallies(conn: sa.Connection, agent: str, window_from: float,
            since: dict[str, float]) -> dict[str, tuple[Tally, Tally]]:
    """Per site, (its results after `window_from`, those after `since[site]` of them): counted in
    SQL in one pass over the window, one statement per site, from the covering
    (agent, site, at, ok, site_fault, ...) index."""
    out: dict[str, tuple[Tally, Tally]] = {}
    fault = sa.and_(R.c.ok == sa.false(), R.c.site_fault == sa.true())

    def counts(after: float) -> list[sa.ColumnElement[Any]]:
        recent = R.c.at > after
        return [sa.func.sum(sa.case((sa.and_(recent, R.c.ok == sa.true()), 1), else_=0)),
                sa.func.sum(sa.case((sa.and_(recent, fault), 1), else_=0)),
                sa.func.sum(sa.case((recent, 1), else_=0))]

    for site, lower in since.items():
        row = conn.execute(
            sa.select(*counts(window_from), *counts(lower))
            .where(R.c.agent == agent, R.c.site == site, R.c.at > min(window_from, lower))
        ).one()
        ok, faults, ended, ok_since, faults_since, ended_since = (int(v or 0) for v in row)
        if ended or ended_since:
            out[site] = (Tally(ok, faults, ended - ok - faults),
                         Tally(ok_since, faults_since, ended_since - ok_since - faults_since))
    return out


def recent_results(conn: sa.Connection, agent: str, site: str, since: float) -> list[sa.Row]:
    """A site's results after `since`, oldest first (probing looks at the streak)."""
    return list(conn.execute(
        sa.select(R.c.ok, R.c.site_fault, R.c.at)
        .where(R.c.agent == agent, R.c.site == site, R.c.at > since).order_by(R.c.at, R.c.id)
    ))


def quick_failures_by_node(conn: sa.Connection, agent: str, sites: Sequence[str], since: float,
                           quick_s: float) -> dict[tuple[str, str], tuple[int, int]]:
    """(site, node) -> (failures that ended within `quick_s` of starting, attempts that ended),
    after `since`; per site, from the covering index."""
    quick = sa.and_(R.c.ok == sa.false(), R.c.wall_s.is_not(None), R.c.wall_s < quick_s)
    out: dict[tuple[str, str], tuple[int, int]] = {}
    for site in sites:
        rows = conn.execute(
            sa.select(R.c.node, sa.func.sum(sa.case((quick, 1), else_=0)), sa.func.count())
            .where(R.c.agent == agent, R.c.site == site, R.c.at > since, R.c.node.is_not(None))
            .group_by(R.c.node)
        )
        out.update({(site, r[0]): (int(r[1] or 0), int(r[2])) for r in rows})
    return out


def health(conn: sa.Connection, agent: str, lock: bool = False) -> dict[str, sa.Row]:
    query = sa.select(H).where(H.c.agent == agent).order_by(H.c.site)
    if lock:
        query = query.with_for_update()
    return {r.site: r for r in conn.execute(query)}


def ensure_sites(conn: sa.Connection, agent: str, sites: Sequence[str], known: dict[str, sa.Row],
                 since: float) -> None:
    """A row in state `normal` for each configured site without one, judged on results after `since`."""
    fresh = [{"agent": agent, "site": s, "state": site_states.NORMAL, "reason": "configured", "since": since,
              "forced": False} for s in sites if s not in known]
    if fresh:
        conn.execute(H.insert(), fresh)


def set_state(conn: sa.Connection, agent: str, site: str, from_state: str | None, to_state: str, reason: str,
              figures: dict[str, Any], forced: bool | None = None) -> bool:
    """Move a site from `from_state` (compare-and-set) and record the change; False if it had moved."""
    now = time.time()
    values: dict[str, Any] = {"state": to_state, "reason": reason, "since": now}
    if forced is not None:
        values["forced"] = forced
    where = [H.c.agent == agent, H.c.site == site]
    if from_state is not None:
        where.append(H.c.state == from_state)
    if conn.execute(H.update().where(*where).values(**values)).rowcount == 0:
        if from_state is not None:
            return False
        conn.execute(H.insert().values(agent=agent, site=site, forced=bool(forced), **values))
    conn.execute(E.insert().values(agent=agent, site=site, from_state=from_state, to_state=to_state,
                                   reason=reason, figures=json.dumps(figures, sort_keys=True), at=now))
    return True


def events(conn: sa.Connection, agent: str, site: str | None = None, limit: int = 100) -> list[sa.Row]:
    query = sa.select(E).where(E.c.agent == agent)
    if site:
        query = query.where(E.c.site == site)
    return list(conn.execute(query.order_by(E.c.id.desc()).limit(limit)))


def excluded_nodes(conn: sa.Connection, agent: str, now: float) -> dict[str, tuple[str, ...]]:
    """Per site, the nodes excluded from submission at `now`."""
    out: dict[str, list[str]] = {}
    for r in conn.execute(sa.select(X.c.site, X.c.node).where(X.c.agent == agent, X.c.until > now)):
        out.setdefault(r.site, []).append(r.node)
    return {site: tuple(sorted(nodes)) for site, nodes in out.items()}


def exclude_node(conn: sa.Connection, agent: str, site: str, node: str, until: float, reason: str,
                 figures: dict[str, Any]) -> None:
    """Exclude a node until `until` and record why (an exclusion still running is left as it is)."""
    now = time.time()
    row = conn.execute(sa.select(X.c.until).where(X.c.agent == agent, X.c.site == site, X.c.node == node)).first()
    if row is not None and row.until > now:
        return
    if row is None:
        conn.execute(X.insert().values(agent=agent, site=site, node=node, until=until, reason=reason))
    else:
        conn.execute(X.update().where(X.c.agent == agent, X.c.site == site, X.c.node == node)
                     .values(until=until, reason=reason))
    conn.execute(E.insert().values(agent=agent, site=site, node=node, from_state=None, to_state="node-excluded",
                                   reason=reason, figures=json.dumps(figures, sort_keys=True), at=now))


def purge_results(conn: sa.Connection, agent: str, sites: Sequence[str], before: float) -> int:
    """Forget the results of these sites older than `before` (by index, site by site)."""
    return sum(conn.execute(R.delete().where(R.c.agent == agent, R.c.site == site, R.c.at < before)).rowcount
               for site in sites)
