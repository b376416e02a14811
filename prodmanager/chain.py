"""Chained requests (TaskChain): a processing request whose input is the dataset another request
produces (`input.dataset`), fed while the producer still runs.

- At submission the dataset must be the output of an existing request that is not aborted, and
  not the consumer's own output (a cycle); else the door refuses it naming `input.dataset`.
- Files are handed on as they are merged: each merged file of the producer becomes one
  allocation of every live consumer (with its PFN, so an agent on another host of the same
  storage finds it through this bookkeeping), in the same transaction that registers it. Files
  merged before the consumer was submitted are handed on at its submission. An LFN is handed to
  a consumer once (`handed_lfns`), so a repeated report hands nothing twice.
- A consumer finishes only once its producer has: `producer_pending` keeps it open while the
  producer may still merge files; a producer that ended failed or aborted lets it end with
  what it got, and its history says so (`lifecycle.settle`).
- Parentage across tasks: each consumer output's input (the producer's merged file) names its
  own inputs in the producer, so every file knows its parents through `merged_into` and the
  allocation's `input_files`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa

from prodmanager.db import queries as q
from prodmanager.errors import InvalidInput
from prodmanager.states import LIVE, RequestState

#: producer states after which no more files will come
PRODUCER_DONE = frozenset({RequestState.CLOSED, RequestState.FAILED, RequestState.ABORTED})


def input_dataset(spec: dict[str, Any]) -> str | None:
    return (spec.get("input") or {}).get("dataset") if spec.get("kind") == "processing" else None


def producer_of(conn: sa.Connection, dataset: str) -> sa.Row[Any] | None:
    """The newest request (not aborted) whose output is `dataset`."""
    found = None
    for row in q.requests_of_kind(conn, ["montecarlo", "processing"]):
        if row.state != RequestState.ABORTED and json.loads(row.spec)["output"]["dataset"] == dataset:
            found = row
    return found


def check_input(conn: sa.Connection, spec: dict[str, Any]) -> sa.Row[Any] | None:
    """The producer of a chained request's input dataset; InvalidInput naming input.dataset when
    no request produces it."""
    dataset = input_dataset(spec)
    if dataset is None:
        return None
    producer = producer_of(conn, dataset)
    if producer is None:
        raise InvalidInput(
            f"unknown input dataset {dataset}: no request produces it",
            errors=[{"path": "input.dataset", "message": f"no request produces {dataset}"}],
        )
    return producer


def hand_on(conn: sa.Connection, producer_id: int, now: float) -> int:
    """Give every live consumer of the producer's dataset the producer's merged files it does not
    have yet, one allocation each; the number of allocations made."""
    producer = q.get_request(conn, producer_id)
    if producer is None:
        return 0
    dataset = json.loads(producer.spec)["output"]["dataset"]
    return sum(feed(conn, int(c.id), producer, now) for c in consumers_of(conn, dataset, LIVE))


def consumers_of(
    conn: sa.Connection, dataset: str, states: Iterable[str] | None = None
) -> list[sa.Row[Any]]:
    """The processing requests (in these states) whose input is `dataset`, oldest first."""
    return [c for c in q.requests_of_kind(conn, ["processing"], states)
            if input_dataset(json.loads(c.spec)) == dataset]


def feed(conn: sa.Connection, consumer_id: int, producer: sa.Row[Any], now: float) -> int:
    q.get_request(conn, consumer_id, lock=True)  # one feeder at a time: job indices stay unique
    have = q.handed_lfns(conn, consumer_id)
    new = [f for f in q.merged_files_of(conn, int(producer.id)) if f.lfn not in have]
    if not new:
        return 0
    first = q.next_job_index(conn, consumer_id)
    rows = []
    for k, f in enumerate(new):
        ref = {"lfn": f.lfn, "pfn": f.pfn, "run": int(producer.run_number), "events": int(f.events)}
        rows.append({
            "request_id": consumer_id, "job_index": first + k, "first_event": 0,
            "n_events": int(f.events), "n_jobs": 1, "seed": first + k + 1, "input_files": json.dumps([ref]),
            "state": "open", "lease_epoch": 0, "lease_expires": 0.0, "events_done": 0, "updated_at": now,
        })
    q.insert_allocations(conn, rows)
    q.add_to_totals(conn, consumer_id, len(rows), sum(int(f.events) for f in new), now)
    return len(rows)


def producer_pending(conn: sa.Connection, spec: dict[str, Any]) -> tuple[bool, str]:
    """(True while the chained request's producer may still hand on files, why it ended)."""
    dataset = input_dataset(spec)
    if dataset is None:
        return False, ""
    producer = producer_of(conn, dataset)
    if producer is None or producer.state in PRODUCER_DONE:
        state = "gone" if producer is None else producer.state
        partial = state != RequestState.CLOSED
        return False, (f"input request {producer.id if producer else '?'} ended {state}: "
                       "processed what it handed on" if partial else "")
    return True, ""
