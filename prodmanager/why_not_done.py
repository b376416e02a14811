"""The answer to "why is this request not done?", computed from live state: each reason a
sentence with its numbers and, where the owner or an operator can act, the action (resume,
resubmit the paused jobs by class). Read inside the monitor's transaction."""

from __future__ import annotations

import json
import re
import time
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from prodmanager.chain import PRODUCER_DONE
from prodmanager.db import job_queries as jq
from prodmanager.db import queries as q
from prodmanager.db.job_queries import OPERATOR_STATES
from prodmanager.runs import Run
from prodmanager.states import ACQUIRABLE, FINISHED, RequestState
from prodrequest.spec import Sites

COOLOFF = "cooloff"


def explain(
    conn: sa.Connection, row: sa.Row[Any], c: Any, now: float,
    run_list: Sequence[Run] = (), producer: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Reasons the request is not done yet, each a sentence with its numbers and, where an
    operator or owner can act, the action. `run_list` are a processing request's runs and
    `producer` a chained request's input request (id and state)."""
    reasons: list[dict[str, Any]] = []

    def say(code: str, text: str, action: str | None = None, **extra: Any) -> None:
        reasons.append({"code": code, "text": text, "action": action, **extra})

    # A run needing an operator holds a request even once it ended failed.
    for r in run_list:
        if r.state == "needs_attention":
            say("run_attention", f"run {r.run} needs attention ({r.reason}); act: "
                f"{', '.join(r.decisions())}", "decide_run", run=r.run)
    if producer and producer["state"] not in PRODUCER_DONE and row.state not in FINISHED:
        say("producer", f"waiting for producer request {producer['id']} ({producer['state']}): "
            "its merged files are this request's input", "producer", request=producer["id"])

    if row.state in FINISHED:
        unmerged = c.files_unmerged
        if row.state == RequestState.COMPLETED and unmerged:
            say("merges_waiting", f"{unmerged} output file(s) wait to be merged by the agents")
        else:
            say("finished", f"the request is {row.state}")
        return reasons
    if row.state == RequestState.PAUSED:
        last = q.history(conn, int(row.id))[-1]
        say("paused", f"paused by {last.actor}: {last.reason}", "resume")
    available = c.allocations.get("available", 0)
    sites = Sites.model_validate_json(row.sites)
    agents = q.list_agents(conn, now)
    held = {a.name: int(a.held) for a in agents}
    able = [a for a in agents if sites.admits(json.loads(a.sites))]
    if available and not able:
        listed = "; ".join(
            f"{a.name} (sites {', '.join(json.loads(a.sites)) or 'any'}, "
            f"free {a.capacity - held.get(a.name, 0)} of {a.capacity})"
            for a in agents
        ) or "none registered"
        wl = ", ".join(sites.whitelist) or "any"
        bl = ", ".join(sites.blacklist) or "none"
        say(
            "no_agent",
            f"no agent can run it: site whitelist [{wl}], blacklist [{bl}] match none of "
            f"the {len(agents)} agent(s): {listed}",
        )
    elif available and able:
        free = sum(max(a.capacity - held.get(a.name, 0), 0) for a in able)
        if free == 0:
            say(
                "agents_full",
                f"{available} job(s) queued: the {len(able)} agent(s) that may run it are at "
                f"their limit ({sum(a.capacity for a in able)} slots, all held)",
            )
        elif row.state in ACQUIRABLE:
            say(
                "queued",
                f"{available} job(s) wait for an agent to pull them; {free} free slot(s) "
                f"at {len(able)} agent(s) that may run it",
            )
    jobs = c.jobs
    waiting = sum(jobs.get(s, 0) for s in OPERATOR_STATES)
    if waiting:
        shown = ", ".join(f"{jobs[s]} {s}" for s in OPERATOR_STATES if jobs.get(s))
        classes: dict[str, int] = defaultdict(int)
        for w in jq.waiting(conn, int(row.id), list(OPERATOR_STATES), now):
            classes[w.error_class or ""] += 1
        say("jobs_paused", f"{waiting} job(s) wait for an operator ({shown})", "resubmit",
            classes=dict(classes))
    if jobs.get(COOLOFF):
        say("cooloff", cooloff_text(jq.waiting(conn, int(row.id), [COOLOFF], now)) or
            f"{jobs[COOLOFF]} job(s) in cool-off before their next attempt")
    leased = c.allocations.get("leased", 0) - waiting - jobs.get(COOLOFF, 0)
    if leased > 0:
        say("running", f"{leased} job(s) held by agents, running or about to run")
    for a in able:
        dead = {x["name"]: x["dead_letters"] for x in components_of(a) if x["dead_letters"]}
        down = [x["name"] for x in components_of(a) if not x["alive"]]
        if dead:
            listed = ", ".join(f"{n} {name}" for name, n in sorted(dead.items()))
            say("dead_letters", f"agent {a.name} has dead letters ({listed}): messages its "
                "components gave up on; see `prodAgentd messages dead-letters`")
        if down:
            say("components_down", f"agent {a.name}: component(s) not running: "
                f"{', '.join(sorted(down))}")
    failed = c.allocations.get("failed", 0)
    if failed:
        say("failed", f"{failed} job(s) failed for good; clone the request once it ends")
    return reasons


_DELAY = re.compile(r" in (\d+)s\b")


def cooloff_text(rows: Any) -> str | None:
    """'3 job(s) in cool-off: 2 OutOfMemory until 12:00:05, 1 PayloadError until 12:00:09'."""
    if not rows:
        return None
    latest: dict[str, tuple[int, float]] = {}
    for r in rows:
        found = _DELAY.search(r.reason or "")
        until = float(r.at) + (int(found.group(1)) if found else 0)
        n, last = latest.get(r.error_class or "unclassified", (0, 0.0))
        latest[r.error_class or "unclassified"] = (n + 1, max(last, until))
    parts = ", ".join(
        f"{n} {cls} until {time.strftime('%H:%M:%S', time.gmtime(until))} UTC"
        for cls, (n, until) in sorted(latest.items())
    )
    return f"{len(rows)} job(s) in cool-off before their next attempt: {parts}"


def components_of(agent_row: Any) -> list[dict[str, Any]]:
    """The agent's components as it last pushed them ([] if it never did)."""
    if not agent_row.status:
        return []
    return list(json.loads(agent_row.status).get("components", []))
