"""Site circuit breakers and black-hole nodes, decided from the agent's own job results.

Only failures the site caused count (lost jobs, node failures, stage-out failures: `SITE_FAULTS`);
a payload's own errors are the request's business. Per site, over the last `window_s` and since
its last state change: a share of site-caused failures of `degrade_at` degrades it, `ban_at`
bans it (no more than `max_banned_share` of the sites at once); a degraded site whose failures
fall under `recover_below` is normal again. A banned site is probed after `ban_s`: a few jobs at
a time, and `probe_successes` successes in a row make it normal, a site-caused failure bans it
again. A node with `node_failures` quick failures (under `node_quick_s`) within `node_window_s`,
making at least `node_fail_share` of its attempts there, is excluded from submission for
`node_exclude_s` (a node running hundreds of jobs fails a few of them without being a black
hole). Every change is recorded with its figures.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field

from prodagent.jobs import site_states as ss
from prodagent.jobs import site_store

# Batch or job error classes that say the site, not the payload, failed the attempt.
SITE_FAULTS = frozenset({"Lost", "NODE_FAIL", "BOOT_FAIL", "StageOutFailed"})

log = logging.getLogger("prodagent.site_health")


class SiteHealthSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    evaluate_s: float = Field(10.0, gt=0)
    window_s: float = Field(1800.0, gt=0)
    min_jobs: int = Field(5, ge=1)  # attempts judged before a site's state may change
    degrade_at: float = Field(0.2, gt=0, le=1)
    ban_at: float = Field(0.5, gt=0, le=1)
    recover_below: float = Field(0.1, ge=0, le=1)
    ban_s: float = Field(600.0, ge=0)  # banned this long before probing
    probe_jobs: int = Field(2, ge=1)  # jobs in the batch system at once while probing
    probe_successes: int = Field(3, ge=1)
    max_banned_share: float = Field(0.5, ge=0, le=1)
    node_window_s: float = Field(600.0, gt=0)
    node_quick_s: float = Field(60.0, gt=0)
    node_failures: int = Field(3, ge=1)
    node_fail_share: float = Field(0.5, gt=0, le=1)  # ... and at least this share of its attempts
    node_exclude_s: float = Field(3600.0, gt=0)


def is_site_fault(error_class: str | None, lost: bool = False) -> bool:
    return lost or error_class in SITE_FAULTS


class SiteBreaker:
    """Evaluates every configured site of one agent; run inside a transaction."""

    def __init__(self, agent: str, settings: SiteHealthSettings) -> None:
        self.agent = agent
        self.s = settings
        self.success: dict[str, float] = {}  # recent success ratio per site, for placement

    def evaluate(self, conn: sa.Connection, sites: Sequence[str], now: float | None = None) -> list[str]:
        """Apply the rules once; what changed (for the log)."""
        now = now or time.time()
        rows = site_store.health(conn, self.agent, lock=True)
        site_store.ensure_sites(conn, self.agent, sites, rows, now - self.s.window_s)
        rows = site_store.health(conn, self.agent) if set(sites) - set(rows) else rows
        since = {s: max(now - self.s.window_s, rows[s].since) for s in sites}
        counted = site_store.tallies(conn, self.agent, now - self.s.window_s, since)
        self.success = {s: (t.ok + 1) / (t.judged + 2) for s, (t, _since) in counted.items()}
        tallies = {s: t for s, (_window, t) in counted.items()}
        banned = sum(1 for s in sites if rows[s].state == ss.BANNED)
        changes: list[str] = []
        for site in sites:
            row = rows[site]
            if row.forced:
                continue
            tally = tallies.get(site, site_store.Tally())
            figures: dict[str, Any] = {"ok": tally.ok, "site_faults": tally.site_fault, "other_failures": tally.other,
                                       "fault_rate": round(tally.fault_rate, 3), "since": round(since[site], 3)}
            state = row.state
            if state == ss.NORMAL and tally.judged >= self.s.min_jobs and tally.fault_rate >= self.s.degrade_at:
                state = self._move(conn, site, state, ss.DEGRADED,
                                   f"{tally.site_fault} of {tally.judged} attempts failed at the site", figures, changes)
            if state == ss.DEGRADED and tally.judged >= self.s.min_jobs:
                if tally.fault_rate >= self.s.ban_at:
                    cap = int(self.s.max_banned_share * len(sites))
                    if banned + 1 > cap:
                        log.warning("site %s: not banned (%d of %d sites banned already, at most %d)",
                                    site, banned, len(sites), cap)
                    else:
                        banned += 1
                        self._move(conn, site, state, ss.BANNED,
                                   f"{tally.site_fault} of {tally.judged} attempts failed at the site",
                                   {**figures, "banned_sites": banned, "max_banned": cap}, changes)
                elif tally.fault_rate < self.s.recover_below and rows[site].state == ss.DEGRADED:
                    self._move(conn, site, state, ss.NORMAL,
                               f"{tally.site_fault} of {tally.judged} attempts failed at the site", figures, changes)
            elif state == ss.BANNED and now - row.since >= self.s.ban_s:
                self._move(conn, site, state, ss.PROBING, f"banned for {now - row.since:.0f} s: probing",
                           figures, changes)
            elif state == ss.PROBING:
                self._probe(conn, site, row.since, changes)
        changes += self._black_holes(conn, sites, now)
        site_store.purge_results(conn, self.agent, sorted(set(sites) | set(rows)),
                                 now - 2 * max(self.s.window_s, self.s.node_window_s))
        return changes

    def _probe(self, conn: sa.Connection, site: str, since: float, changes: list[str]) -> None:
        results = site_store.recent_results(conn, self.agent, site, since)
        faults = sum(1 for r in results if r.site_fault)
        streak = 0
        for r in reversed(results):
            if not r.ok:
                break
            streak += 1
        figures = {"probe_results": len(results), "site_faults": faults, "success_streak": streak}
        if faults:
            self._move(conn, site, ss.PROBING, ss.BANNED, "a probe job failed at the site", figures, changes)
        elif streak >= self.s.probe_successes:
            self._move(conn, site, ss.PROBING, ss.NORMAL, f"{streak} probe jobs in a row succeeded", figures, changes)

    def _move(self, conn: sa.Connection, site: str, from_state: str, to_state: str, reason: str,
              figures: dict[str, Any], changes: list[str]) -> str:
        ss.check(from_state, to_state)
        if site_store.set_state(conn, self.agent, site, from_state, to_state, reason, figures):
            changes.append(f"site {site}: {from_state} -> {to_state}: {reason}")
            return to_state
        return from_state

    def _black_holes(self, conn: sa.Connection, sites: Sequence[str], now: float) -> list[str]:
        changes = []
        counts = site_store.quick_failures_by_node(conn, self.agent, sites, now - self.s.node_window_s,
                                                  self.s.node_quick_s)
        excluded = site_store.excluded_nodes(conn, self.agent, now)
        for (site, node), (quick, ended) in counts.items():
            if quick < self.s.node_failures or quick < self.s.node_fail_share * ended:
                continue  # a busy node failing a few of its many jobs is no black hole
            if node not in excluded.get(site, ()):
                reason = (f"{quick} of its {ended} attempts failed under {self.s.node_quick_s:.0f} s "
                          f"within {self.s.node_window_s:.0f} s")
                site_store.exclude_node(conn, self.agent, site, node, now + self.s.node_exclude_s, reason,
                                        {"quick_failures": quick, "attempts": ended,
                                         "until": now + self.s.node_exclude_s})
                changes.append(f"site {site}: node {node} excluded: {reason}")
        return changes


def force(conn: sa.Connection, agent: str, site: str, state: str | None, reason: str) -> str:
    """An operator's decision: force `state` (kept until released), or release with `state` None."""
    rows = site_store.health(conn, agent, lock=True)
    current = rows[site].state if site in rows else ss.NORMAL
    if state is None:
        site_store.set_state(conn, agent, site, None, current, f"released by the operator: {reason}", {},
                             forced=False)
        return current
    ss.check(current, state, forced=True)
    site_store.set_state(conn, agent, site, None, state, f"forced by the operator: {reason}",
                         {"previous": current}, forced=True)
    return state
