"""Read-only figures about an agent's work: jobs by state, retries by error class, files, datasets.

What `prodagent summary` and the main job print at the end of a production. The statements
live in `prodagent.jobs.store`; this module shapes what they return.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from prodagent.jobs import file_states, states, store
from prodagent.storage import catalog

DECISIONS = (states.COOLOFF, states.PAUSED, states.EXHAUSTED)


def jobs_by_state(conn: sa.Connection, agent: str) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for (job_type, state), n in store.count_by_state(conn, agent).items():
        out.setdefault(job_type, {})[state] = n
    return out


def _error_class(reason: str | None) -> str:
    return (reason or "?").split(":", 1)[0]


def retries_by_class(conn: sa.Connection, agent: str) -> dict[str, int]:
    """How many attempts were retried, by the error class that caused the retry."""
    out: dict[str, int] = {}
    for _to_state, reason in store.transition_reasons(conn, agent, [states.COOLOFF]):
        name = _error_class(reason)
        out[name] = out.get(name, 0) + 1
    return out


def decisions_by_class(conn: sa.Connection, agent: str) -> dict[str, dict[str, int]]:
    """Error-handler decisions (cooloff, paused, exhausted) by error class."""
    out: dict[str, dict[str, int]] = {}
    for to_state, reason in store.transition_reasons(conn, agent, DECISIONS):
        by_state = out.setdefault(_error_class(reason), {})
        by_state[to_state] = by_state.get(to_state, 0) + 1
    return out


def datasets(conn: sa.Connection, agent: str) -> list[dict[str, Any]]:
    result = []
    for ds in store.datasets_of(conn, agent):
        files: dict[str, dict[str, int]] = {}
        for kind, state, n, size, events in store.file_figures(conn, ds.id):
            files[f"{kind}/{state}"] = {"files": int(n), "bytes": int(size or 0), "events": int(events or 0)}
        merged = files.get(f"{file_states.MERGED_KIND}/{file_states.FINAL}", {"files": 0, "bytes": 0, "events": 0})
        produced = sum(v["events"] for k, v in files.items() if k.startswith(f"{file_states.UNMERGED}/"))
        result.append({
            "id": ds.id, "name": ds.name, "tier": ds.tier, "request_id": ds.request_id,
            "events_produced": produced, "events_merged": merged["events"],
            "merged_files": merged["files"], "merged_bytes": merged["bytes"], "files": files,
        })
    return result


def dataset_runs(conn: sa.Connection, agent: str, dataset_id: int) -> list[dict[str, Any]]:
    """Per run of a dataset: its files by kind/state with their events, and its merge gate."""
    ds = next((d for d in store.datasets_of(conn, agent) if d.id == dataset_id), None)
    if ds is None:
        return []
    gates = store.run_gates(conn, agent, ds.request_id)
    runs: dict[int | None, dict[str, Any]] = {}
    for run, kind, state, n, events in store.run_figures(conn, dataset_id):
        entry = runs.setdefault(run, {"run": run, "gate": gates.get(run) if run is not None else None, "files": {}})
        entry["files"][f"{kind}/{state}"] = {"files": int(n), "events": int(events or 0)}
    for run, gate in gates.items():
        runs.setdefault(run, {"run": run, "gate": gate, "files": {}})
    return [runs[k] for k in sorted(runs, key=lambda r: -1 if r is None else r)]


def files(conn: sa.Connection, dataset_id: int | None = None, kind: str | None = None,
          state: str | None = None, limit: int = 1000) -> list[dict[str, Any]]:
    return [dict(r._mapping) for r in store.select_files(conn, dataset_id, kind, state, limit)]


def file_with_replicas(conn: sa.Connection, key: str) -> dict[str, Any] | None:
    """{file, replicas, parents, derived_from} of the file with this id or LFN, or None:
    `parents` the unmerged files a merged file holds, `derived_from` the files of other tasks
    (or outside this catalog) it derives from, by LFN."""
    row = store.file_by_lfn(conn, key) or (store.file_by_id(conn, int(key)) if key.isdigit() else None)
    if row is None:
        return None
    return {"file": dict(row._mapping), "replicas": [dict(r._mapping) for r in catalog.of_files(conn, [row.id])],
            "parents": store.parent_lfns(conn, row.id), "derived_from": store.lineage(conn, [row.id])[row.id]}
