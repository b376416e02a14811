"""Runs of a processing request: the state of every input file, each run's merge gate, and the
operator's decisions on runs that need attention.

Input files have ONE state table, derived from the allocation that holds the file (so it can
never disagree with the leases), and from the operator's decision on its run:

    unused     its allocation is open and not leased
    assigned   its allocation is leased to an agent
    processed  its allocation is done
    failed     its allocation failed (retries exhausted)
    given_up   failed, and an operator accepted or dropped its run
    recalled   its request was aborted

A run's state, from its files, its outputs and the decision (`pm_run`):

    open             a file of it is unused or assigned
    needs_attention  nothing open, and a file failed, or its merged events differ from the
                     processed files' events: waits for an operator, the numbers shown
    ready            nothing open, nothing failed (or an operator accepted): agents may merge it
    merged           ready, and every output merged with exactly the processed events
    dropped          an operator dropped it: its outputs are never merged

Decisions (`DECISIONS`, from needs_attention only): accept (merge what there is), drop (its
unmerged outputs are superseded, so the request can close without them) and reprocess (its failed
allocations open again; the run is open again). A file is in exactly one allocation (the
splitter's groups), so none is processed twice and none is forgotten: the request ends only when
each file is processed or given up.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from prodmanager import chain, lifecycle
from prodmanager.db import queries as q
from prodmanager.errors import Conflict, NotFound
from prodmanager.models import RunInfo
from prodmanager.states import AllocationState, RequestState

FILE_STATES = ("unused", "assigned", "processed", "failed", "given_up", "recalled")
RUN_STATES = ("open", "needs_attention", "ready", "merged", "dropped")
#: decision -> the run states it may be taken from
DECISIONS: dict[str, frozenset[str]] = {
    "accept": frozenset({"needs_attention"}),
    "drop": frozenset({"needs_attention", "ready"}),
    "reprocess": frozenset({"needs_attention"}),
}
_RECORDED = {"accept": "accepted", "drop": "dropped"}


def file_state(alloc_state: str, leased: bool, decision: str | None) -> str:
    """The state of an input file held by an allocation in `alloc_state` (the one table)."""
    if alloc_state == AllocationState.OPEN:
        return "assigned" if leased else "unused"
    if alloc_state == AllocationState.DONE:
        return "processed"
    if alloc_state == AllocationState.FAILED:
        return "given_up" if decision in ("accepted", "dropped") else "failed"
    return "recalled"


@dataclass
class Run:
    """One run's numbers (events are the files' declared events, or their outputs' when the
    file list does not declare them)."""

    run: int
    files: dict[str, int] = field(default_factory=lambda: dict.fromkeys(FILE_STATES, 0))
    input_events: int = 0
    processed_events: int = 0
    merged_events: int = 0
    unmerged_outputs: int = 0
    allocations: list[int] = field(default_factory=list)
    failed_allocations: list[int] = field(default_factory=list)
    decision: str | None = None
    state: str = "open"
    reason: str = ""

    def info(self) -> RunInfo:
        return RunInfo(run=self.run, state=self.state, reason=self.reason,  # type: ignore[arg-type]
                       files=dict(self.files), input_events=self.input_events,
                       processed_events=self.processed_events, merged_events=self.merged_events,
                       decision=self.decision)

    def decisions(self) -> list[str]:
        """The decisions an operator may take on the run now."""
        return [d for d, states in DECISIONS.items() if self.state in states]

    def judge(self) -> None:
        if self.decision == "dropped":
            self.state, self.reason = "dropped", "dropped by an operator"
            return
        if self.files["unused"] or self.files["assigned"]:
            self.state = "open"
            return
        if self.files["failed"]:
            self.state = "needs_attention"
            self.reason = (f"{self.files['failed']} of {sum(self.files.values())} file(s) failed: "
                           f"{self.processed_events} of {self.input_events} input events processed")
            return
        if self.unmerged_outputs:
            self.state = "ready"
            return
        if self.merged_events != self.processed_events and self.decision != "accepted":
            self.state = "needs_attention"
            self.reason = (f"merged events {self.merged_events} differ from the "
                           f"{self.processed_events} processed input events")
            return
        self.state = "merged"


def summarise(conn: sa.Connection, request_id: int, now: float) -> list[Run]:
    """Every run of the request, in run order (none for Monte Carlo requests)."""
    request = q.get_request(conn, request_id)
    if request is None or request.kind != "processing":
        return []  # without reading a million outputs to find no input file among them
    decisions = {r: row.decision for r, row in q.run_decisions(conn, request_id).items()}
    produced: dict[int, list[Any]] = defaultdict(list)
    for f in q.unmerged_outputs(conn, request_id):
        produced[int(f.allocation_id)].append(f)
    runs: dict[int, Run] = {}
    for a in q.run_allocations(conn, request_id):
        files = json.loads(a.input_files) if a.input_files else []
        if not files:
            continue
        number = int(files[0].get("run") or 0)  # an allocation's files share a run (split: run)
        r = runs.get(number)
        if r is None:  # not setdefault: a Run per allocation would be built and thrown away
            r = runs[number] = Run(number, decision=decisions.get(number))
        r.allocations.append(int(a.id))
        state = file_state(a.state, float(a.lease_expires) >= now, r.decision)
        declared = [f.get("events") for f in files]
        outputs_here = produced.get(int(a.id), [])
        events = (sum(int(e) for e in declared) if None not in declared
                  else sum(int(o.events) for o in outputs_here))
        r.files[state] += len(files)
        r.input_events += events
        if state == "processed":
            r.processed_events += events
            r.merged_events += sum(int(o.events) for o in outputs_here if o.state == "merged")
            r.unmerged_outputs += sum(1 for o in outputs_here if o.state == "valid")
        elif a.state == AllocationState.FAILED:
            r.failed_allocations.append(int(a.id))
    pending = chain.producer_pending(conn, json.loads(request.spec))[0]
    for r in runs.values():
        r.judge()
        if pending and r.state != "dropped":  # its input request may still hand on files of it
            r.state, r.reason = "open", "input request still producing"
    return [runs[n] for n in sorted(runs)]


def decide(conn: sa.Connection, request_id: int, run_number: int, action: str, actor: str,
           reason: str, now: float) -> Run:
    """An operator's decision on a run; Conflict when the run is not in a state it applies to."""
    request = q.get_request(conn, request_id, lock=True)
    if request is None:
        raise NotFound(f"no request {request_id}")
    found = {r.run: r for r in summarise(conn, request_id, now)}.get(run_number)
    if found is None:
        raise NotFound(f"request {request_id} has no run {run_number}")
    if found.state not in DECISIONS[action]:
        allowed = ", ".join(sorted(DECISIONS[action]))
        raise Conflict(f"run {run_number} is {found.state}; {action} applies to runs {allowed}",
                       state=found.state)
    why = reason or f"{action} by {actor}"
    if action == "reprocess":
        q.set_run_decision(conn, request_id, run_number, None, actor, why, now)
        q.reopen_failed(conn, found.failed_allocations, f"reprocess: {why}", now)
        if request.state == RequestState.FAILED:
            lifecycle.transition(conn, request_id, request.state, RequestState.RUNNING, actor,
                                 f"run {run_number} reprocessed: {why}", now)
    else:
        q.set_run_decision(conn, request_id, run_number, _RECORDED[action], actor, why, now)
        if action == "drop":
            q.supersede_files(conn, found.allocations)
    q.insert_history(conn, request_id, request.state, request.state, actor,
                     f"run {run_number}: {action}: {why}"[:500], now)
    return {r.run: r for r in summarise(conn, request_id, now)}[run_number]


def failures_given_up(conn: sa.Connection, request_id: int, now: float) -> bool:
    """True when the request has runs, and an operator decided on every run with a failed file
    (so a failed request may close once the rest is merged)."""
    runs = summarise(conn, request_id, now)
    return bool(runs) and not any(r.files["failed"] for r in runs)


def attention_needed(conn: sa.Connection, request_id: int, now: float) -> bool:
    """True while a run of the request needs an operator (the request must not close)."""
    return any(r.state == "needs_attention" for r in summarise(conn, request_id, now))


def file_totals(runs: list[Run]) -> dict[str, int]:
    """The request's input files by state, over all its runs."""
    totals = dict.fromkeys(FILE_STATES, 0)
    for r in runs:
        for state, n in r.files.items():
            totals[state] += n
    return totals
