"""Read-only figures about an agent's work: jobs by state, retries by error class, files, datasets.

What `prodagent summary` and the main job print at the end of a production.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from prodagent.db.schema import pa_dataset, pa_file, pa_job, pa_job_transition


def jobs_by_state(conn: sa.Connection, agent: str) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    rows = conn.execute(
        sa.select(pa_job.c.job_type, pa_job.c.state, sa.func.count())
        .where(pa_job.c.agent == agent).group_by(pa_job.c.job_type, pa_job.c.state)
    )
    for job_type, state, n in rows:
        out.setdefault(job_type, {})[state] = int(n)
    return out


def retries_by_class(conn: sa.Connection, agent: str) -> dict[str, int]:
    """How many attempts were retried, by the error class that caused the retry."""
    rows = conn.execute(
        sa.select(pa_job_transition.c.reason)
        .join(pa_job, pa_job.c.id == pa_job_transition.c.job_id)
        .where(pa_job.c.agent == agent, pa_job_transition.c.to_state == "cooloff")
    )
    out: dict[str, int] = {}
    for (reason,) in rows:
        name = (reason or "?").split(":", 1)[0]
        out[name] = out.get(name, 0) + 1
    return out


def decisions_by_class(conn: sa.Connection, agent: str) -> dict[str, dict[str, int]]:
    """Error-handler decisions (cooloff, paused, exhausted) by error class."""
    rows = conn.execute(
        sa.select(pa_job_transition.c.to_state, pa_job_transition.c.reason)
        .join(pa_job, pa_job.c.id == pa_job_transition.c.job_id)
        .where(pa_job.c.agent == agent, pa_job_transition.c.to_state.in_(["cooloff", "paused", "exhausted"]))
    )
    out: dict[str, dict[str, int]] = {}
    for to_state, reason in rows:
        name = (reason or "?").split(":", 1)[0]
        out.setdefault(name, {}).setdefault(to_state, 0)
        out[name][to_state] += 1
    return out


def datasets(conn: sa.Connection, agent: str) -> list[dict[str, Any]]:
    result = []
    for ds in conn.execute(sa.select(pa_dataset).where(pa_dataset.c.agent == agent).order_by(pa_dataset.c.id)):
        files: dict[str, dict[str, int]] = {}
        for kind, state, n, size, events in conn.execute(
            sa.select(pa_file.c.kind, pa_file.c.state, sa.func.count(), sa.func.sum(pa_file.c.size),
                      sa.func.sum(pa_file.c.events))
            .where(pa_file.c.dataset_id == ds.id).group_by(pa_file.c.kind, pa_file.c.state)
        ):
            files[f"{kind}/{state}"] = {"files": int(n), "bytes": int(size or 0), "events": int(events or 0)}
        merged = files.get("merged/final", {"files": 0, "bytes": 0, "events": 0})
        produced = sum(v["events"] for k, v in files.items() if k.startswith("unmerged/"))
        result.append({
            "id": ds.id, "name": ds.name, "tier": ds.tier, "request_id": ds.request_id,
            "events_produced": produced, "events_merged": merged["events"],
            "merged_files": merged["files"], "merged_bytes": merged["bytes"], "files": files,
        })
    return result


def files(conn: sa.Connection, dataset_id: int | None = None, kind: str | None = None,
          state: str | None = None, limit: int = 1000) -> list[dict[str, Any]]:
    query = sa.select(pa_file).order_by(pa_file.c.id).limit(limit)
    if dataset_id is not None:
        query = query.where(pa_file.c.dataset_id == dataset_id)
    if kind:
        query = query.where(pa_file.c.kind == kind)
    if state:
        query = query.where(pa_file.c.state == state)
    return [dict(r._mapping) for r in conn.execute(query)]
