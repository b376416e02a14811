"""Request counters, derived from allocations and reported files (never stored as numbers)."""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Any

import sqlalchemy as sa

from prodmanager.db import queries as q
from prodmanager.models import Counters

ALLOCATION_BUCKETS = ("available", "leased", "done", "failed", "recalled")


def counters_for(
    conn: sa.Connection, requests: list[sa.Row[Any]], now: float | None = None
) -> dict[int, Counters]:
    """Counters of each request in `requests` (rows with id and total_events)."""
    now = time.time() if now is None else now
    ids = [int(r.id) for r in requests]
    if not ids:
        return {}
    acc: dict[int, dict[str, Any]] = {i: _empty() for i in ids}
    for row in q.allocation_totals(conn, ids, now):
        _add_allocations(acc[int(row.request_id)], row)
    for row in q.job_states(conn, ids, now):
        acc[int(row.request_id)]["jobs"][row.job_state] += int(row.n)
    for row in q.file_totals(conn, ids):
        _add_files(acc[int(row.request_id)], row)
    return {
        int(r.id): Counters(
            events_requested=int(r.total_events),
            allocations=dict(acc[int(r.id)].pop("allocations")),
            jobs=dict(acc[int(r.id)].pop("jobs")),
            **acc[int(r.id)],
        )
        for r in requests
    }


def _empty() -> dict[str, Any]:
    return {
        "events_allocated": 0,
        "events_in_progress": 0,
        "events_produced": 0,
        "events_failed": 0,
        "events_merged": 0,
        "allocations": dict.fromkeys(ALLOCATION_BUCKETS, 0),
        "jobs": defaultdict(int),
        "files_unmerged": 0,
        "files_merged": 0,
        "bytes_produced": 0,
        "bytes_merged": 0,
    }


def _add_allocations(acc: dict[str, Any], row: sa.Row[Any]) -> None:
    n, events, done = int(row.n), int(row.events), int(row.done)
    if row.state == "open":
        bucket = "leased" if row.leased else "available"
        if row.leased:
            acc["events_allocated"] += events
            acc["events_in_progress"] += done
    else:
        bucket = str(row.state)
        if row.state == "done":
            acc["events_allocated"] += events
            acc["events_produced"] += done
        elif row.state == "failed":
            acc["events_allocated"] += events
            acc["events_failed"] += events
    acc["allocations"][bucket] = acc["allocations"].get(bucket, 0) + n


def _add_files(acc: dict[str, Any], row: sa.Row[Any]) -> None:
    n, size, events = int(row.n), int(row.size), int(row.events)
    if row.kind == "merged":
        acc["files_merged"] += n
        acc["bytes_merged"] += size
        acc["events_merged"] += events
    elif row.state in ("valid", "merged"):
        acc["bytes_produced"] += size
        if row.state == "valid":
            acc["files_unmerged"] += n
