"""ProdRequest's operations: submit, read, abort, pause, resume, close, clone.

A submitted document is validated completely before anything is written; the request and all
its allocations are then stored in one transaction (nothing is stored if any step fails).
Submitting the same document twice returns the first request (safe for client retries).

Server policies, checked before anything is stored: input files of processing workflows must lie
under one of the configured prefixes (`input_prefixes`, default `/store/`; a prefix may be a URL
such as `root://host.example//store/`, which allows that scheme and host only), with no `.` or
`..` segments; a `command` payload needs a token with `allow_commands` (or an operator). A
requester sees only its own requests: another's answers 404, like an unknown id.
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

import sqlalchemy as sa

from prodmanager import chain, lifecycle, outputs, runs, sizing_reports, splitter
from prodmanager.auth import Principal, require_role, require_visible
from prodmanager.counters import counters_for
from prodmanager.db import job_queries as jq
from prodmanager.db import queries as q
from prodmanager.db.engine import Database
from prodmanager.errors import Conflict, Forbidden, IllegalTransition, InvalidInput, NotFound
from prodmanager.models import (
    AllocationInfo,
    FileInfo,
    HistoryEntry,
    RequestDetail,
    RequestSummary,
    ResubmitResult,
    Role,
    RunInfo,
    SubmitResult,
)
from prodmanager.states import FINISHED, RequestState, check_request_transition
from prodmanager.text import printable
from prodrequest.loader import MAX_ERRORS, FieldError, WorkflowInvalid, load_workflow
from prodrequest.spec import SEED_MAX, MonteCarloWorkflow, ProcessingWorkflow, job_seed

Workflow = MonteCarloWorkflow | ProcessingWorkflow
CLONE_SUFFIX = "-acdc"
DEFAULT_INPUT_PREFIXES = ("/store/",)


class RequestService:
    def __init__(
        self, db: Database, input_prefixes: tuple[str, ...] = DEFAULT_INPUT_PREFIXES
    ) -> None:
        self.db = db
        self.input_prefixes = tuple(input_prefixes)

    # --- submit ---------------------------------------------------------------------------------

    def submit_document(
        self, principal: Principal, data: bytes, content_type: str | None = None
    ) -> SubmitResult:
        return self.submit(principal, self.validate_document(principal, data, content_type))

    def validate_document(
        self, principal: Principal, data: bytes, content_type: str | None = None
    ) -> Workflow:
        """Every check a submit makes, storing nothing: the workflow, or InvalidInput /
        Forbidden naming the fields (the web form shows them before submission)."""
        require_role(principal, Role.REQUESTER)
        try:
            workflow = load_workflow(data, content_type)
        except WorkflowInvalid as exc:
            raise invalid_workflow(exc.errors, exc.total) from None
        self._check_policies(principal, workflow.model_dump(mode="json"))
        return workflow

    def _check_policies(self, principal: Principal, spec: dict[str, Any]) -> None:
        check_command_permission(principal, spec)
        check_inputs(spec, self.input_prefixes)

    def submit(self, principal: Principal, workflow: Workflow) -> SubmitResult:
        require_role(principal, Role.REQUESTER)
        spec = workflow.model_dump(mode="json")
        self._check_policies(principal, spec)
        spec_json = json.dumps(spec, sort_keys=True, separators=(",", ":"))
        sha = hashlib.sha256(spec_json.encode()).hexdigest()
        try:
            request_id, created = self.db.transaction(
                lambda conn: _store(conn, principal, workflow, spec_json, sha)
            )
        except sa.exc.IntegrityError:
            # Two submits of one name raced; the loser finds the winner's row.
            request_id, created = self.db.read(
                lambda conn: (_existing(conn, principal, workflow.name, sha), False)
            )
        return SubmitResult(created=created, request=self.summary(request_id))

    # --- read -----------------------------------------------------------------------------------

    def summary(self, request_id: int) -> RequestSummary:
        def work(conn: sa.Connection) -> RequestSummary:
            row = _request_or_404(conn, request_id)
            return _summary(row, counters_for(conn, [row])[row.id])

        return self.db.read(work)

    def get(self, principal: Principal, request_id: int) -> RequestDetail:
        require_role(principal, Role.REQUESTER)

        def work(conn: sa.Connection) -> RequestDetail:
            row = _request_or_404(conn, request_id)
            require_visible(principal, request_id, row.owner)
            counters = counters_for(conn, [row])[row.id]
            entries = [
                HistoryEntry(
                    from_state=h.from_state,
                    to_state=h.to_state,
                    actor=h.actor,
                    reason=h.reason,
                    at=h.at,
                )
                for h in q.history(conn, request_id)
            ]
            base = _summary(row, counters).model_dump()
            spec = json.loads(row.spec)
            producer = chain.producer_of(conn, dataset) if (dataset := chain.input_dataset(spec)) else None
            return RequestDetail(**base, spec=spec, history=entries,
                                 producer_id=int(producer.id) if producer is not None else None,
                                 steps=jq.step_progress(conn, row.id) if spec.get("steps") else {},
                                 sizing=sizing_reports.of_request(conn, row.id) if sizing_reports.is_auto(spec) else [])

        return self.db.read(work)

    def list(
        self,
        principal: Principal,
        states: list[str] | None = None,
        owner: str | None = None,
        limit: int = 500,
    ) -> list[RequestSummary]:
        require_role(principal, Role.REQUESTER)
        unknown = [s for s in states or [] if s not in RequestState.__members__.values()]
        if unknown:
            allowed = ", ".join(s.value for s in RequestState)
            shown = printable(unknown[0], 40)
            raise InvalidInput(f"unknown state {shown!r}; expected one of: {allowed}")
        if not principal.is_operator:
            if owner is not None and owner != principal.name:
                return []  # a requester sees only its own requests
            owner = principal.name

        def work(conn: sa.Connection) -> list[RequestSummary]:
            rows = list(q.list_requests(conn, states, owner, limit))
            counters = counters_for(conn, rows)
            return [_summary(r, counters[r.id]) for r in rows]

        return self.db.read(work)

    def allocations(
        self, principal: Principal, request_id: int, states: list[str] | None = None
    ) -> list[AllocationInfo]:
        require_role(principal, Role.REQUESTER)

        def work(conn: sa.Connection) -> list[AllocationInfo]:
            row = _request_or_404(conn, request_id)
            require_visible(principal, request_id, row.owner)
            now = time.time()
            return [
                _allocation_info(a, now) for a in q.allocations_of_request(conn, request_id, states)
            ]

        return self.db.read(work)

    def runs(self, principal: Principal, request_id: int) -> list[RunInfo]:
        """The runs of a processing request; agents read them too (their merge gate)."""
        def work(conn: sa.Connection) -> list[RunInfo]:
            row = _request_or_404(conn, request_id)
            if principal.role != Role.AGENT:
                require_visible(principal, request_id, row.owner)
            return [r.info() for r in runs.summarise(conn, request_id, time.time())]

        return self.db.read(work)

    def files(self, principal: Principal, request_id: int, kind: str | None = None) -> list[FileInfo]:
        """The request's registered files, each with the files of other tasks it derives from."""
        def work(conn: sa.Connection) -> list[FileInfo]:
            row = _request_or_404(conn, request_id)
            if principal.role != Role.AGENT:
                require_visible(principal, request_id, row.owner)
            return [FileInfo(lfn=f.lfn, kind=f.kind, state=f.state, events=f.events, pfn=f.pfn, parents=parents)
                    for f, parents in q.files_of_request(conn, request_id, kind)]

        return self.db.read(work)

    def decide_run(self, principal: Principal, request_id: int, run: int, action: str,
                   reason: str = "") -> RunInfo:
        """An operator's decision on a run that needs attention: accept, drop or reprocess."""
        require_role(principal, Role.OPERATOR)

        def work(conn: sa.Connection) -> RunInfo:
            now = time.time()
            decided = runs.decide(conn, request_id, run, action, principal.name, reason, now)
            outputs.close_if_merged(conn, request_id, principal.name, now)
            return decided.info()

        return self.db.transaction(work)

    # --- actions --------------------------------------------------------------------------------

    def abort(self, principal: Principal, request_id: int, reason: str = "") -> RequestSummary:
        """Stop the request: open allocations are recalled (agents learn it at their next
        renew and kill the jobs); nothing more goes out."""

        def work(conn: sa.Connection) -> None:
            row = _request_or_404(conn, request_id)
            require_visible(principal, request_id, row.owner)
            why = reason or "aborted"
            now = time.time()
            check_request_transition(row.state, RequestState.ABORTED)
            # Allocations before the request row: the lock order every transaction uses.
            recalled = q.recall_open(conn, request_id, why, now)
            current = q.get_request(conn, request_id, lock=True)
            assert current is not None
            lifecycle.transition(
                conn,
                request_id,
                current.state,
                RequestState.ABORTED,
                principal.name,
                f"{why} ({recalled} allocation(s) recalled)",
                now,
            )

        self.db.transaction(work)
        return self.summary(request_id)

    def pause(self, principal: Principal, request_id: int, reason: str = "") -> RequestSummary:
        """No new allocations go out; leased ones may finish."""
        return self._move(principal, request_id, RequestState.PAUSED, reason or "paused")

    def resume(self, principal: Principal, request_id: int, reason: str = "") -> RequestSummary:
        def target(conn: sa.Connection, row: sa.Row[Any]) -> RequestState:
            if row.state != RequestState.PAUSED:
                raise IllegalTransition(
                    f"request in state '{row.state}' cannot be resumed: it is not paused",
                    state=row.state,
                )
            before = RequestState(q.state_before_pause(conn, request_id) or RequestState.NEW)
            if before != RequestState.RUNNING and q.progress_made(conn, request_id):
                return RequestState.RUNNING  # work finished while paused
            return before

        return self._move(principal, request_id, target, reason or "resumed")

    def close(self, principal: Principal, request_id: int, reason: str = "") -> RequestSummary:
        return self._move(principal, request_id, RequestState.CLOSED, reason or "closed")

    def _move(
        self, principal: Principal, request_id: int, target: Any, reason: str
    ) -> RequestSummary:
        def work(conn: sa.Connection) -> None:
            row = q.get_request(conn, request_id, lock=True)
            if row is None:
                raise NotFound(f"no request {request_id}")
            require_visible(principal, request_id, row.owner)
            goal = target(conn, row) if callable(target) else target
            lifecycle.transition(
                conn, request_id, row.state, goal, principal.name, reason, time.time()
            )

        self.db.transaction(work)
        return self.summary(request_id)

    def resubmit_paused(
        self, principal: Principal, request_id: int, error_class: str | None = None
    ) -> ResubmitResult:
        """Ask the agents to resubmit the request's jobs that wait for an operator (those whose
        last failure has `error_class`, or all): they learn it with their next job report."""

        def work(conn: sa.Connection) -> int:
            row = _request_or_404(conn, request_id)
            require_visible(principal, request_id, row.owner)
            now = time.time()
            chosen = [
                int(w.id)
                for w in jq.waiting(conn, request_id, list(jq.OPERATOR_STATES), now)
                if error_class is None or w.error_class == error_class
            ]
            return jq.mark_resubmit(conn, chosen, now)

        return ResubmitResult(allocations=self.db.transaction(work))

    def clone(self, principal: Principal, request_id: int, reason: str = "") -> SubmitResult:
        """A new request for exactly the work the source did not produce (failed, recalled or
        never done allocations), with the same event ranges, seeds and run number."""

        def work(conn: sa.Connection) -> int:
            row = _request_or_404(conn, request_id)
            require_visible(principal, request_id, row.owner)
            check_command_permission(principal, json.loads(row.spec))
            if row.state not in FINISHED:
                raise Conflict(
                    f"request is {row.state}; clone it once it is completed, failed, aborted or "
                    "closed (abort it first to stop it)",
                    state=row.state,
                )
            missing = q.allocations_of_request(conn, request_id, ["open", "failed", "recalled"])
            if not missing:
                raise Conflict("nothing to resubmit: every allocation of the request is done")
            return _store_clone(conn, principal, row, list(missing), reason)

        new_id = self.db.transaction(work)
        return SubmitResult(created=True, request=self.summary(new_id))


# --- helpers run inside transactions ------------------------------------------------------------


def invalid_workflow(errors: list[FieldError], total: int | None = None) -> InvalidInput:
    """422 listing at most MAX_ERRORS errors, with the count of those left out."""
    total = max(total or 0, len(errors))
    shown = errors[:MAX_ERRORS]
    detail = f"invalid workflow: {total} error(s)"
    extra: dict[str, Any] = {}
    if total > len(shown):
        detail += f" (the first {len(shown)} listed)"
        extra["errors_omitted"] = total - len(shown)
    return InvalidInput(
        detail, errors=[{"path": e.path, "message": e.message} for e in shown], **extra
    )


def check_command_permission(principal: Principal, spec: dict[str, Any]) -> None:
    """An arbitrary `command` payload runs anything on every agent's worker nodes: it needs a
    token created with --allow-commands (operators have it by role)."""
    payload = spec.get("payload")
    if not isinstance(payload, dict) or payload.get("command") is None:
        return
    if principal.may_run_commands:
        return
    message = (
        f"token '{principal.name}' may not submit command payloads; use a registered "
        "transformation, or ask an operator for a token created with --allow-commands"
    )
    raise Forbidden(message, errors=[{"path": "payload.command", "message": message}])


def check_inputs(spec: dict[str, Any], prefixes: tuple[str, ...]) -> None:
    """Every input file must lie under one of `prefixes`, without `.` or `..` segments."""
    files = (spec.get("input") or {}).get("files") or []
    errors = []
    for i, item in enumerate(files):
        lfn = item.get("lfn") if isinstance(item, dict) else item
        problem = input_problem(str(lfn), prefixes)
        if problem:
            errors.append(FieldError(f"input.files[{i}].lfn", problem))
    if errors:
        raise invalid_workflow(errors)


def input_problem(lfn: str, prefixes: tuple[str, ...]) -> str | None:
    """Why `lfn` may not be read by jobs (server policy), or None."""
    prefix = next((p for p in prefixes if lfn.startswith(p)), None)
    if prefix is None:
        return (
            f"input file {lfn[:100]!r} is outside the allowed storage: expected a name under "
            + (", ".join(repr(p) for p in prefixes) or "(no prefix is configured)")
        )
    rest = lfn[len(prefix) :]
    if any(segment in (".", "..") for segment in rest.split("/")):
        return f"input file {lfn[:100]!r} has a '.' or '..' segment"
    return None


def _store(
    conn: sa.Connection, principal: Principal, workflow: Workflow, spec_json: str, sha: str
) -> tuple[int, bool]:
    if q.request_by_name(conn, workflow.name) is not None:
        return _existing(conn, principal, workflow.name, sha), False
    producer = chain.check_input(conn, json.loads(spec_json))
    now = time.time()
    request_id = q.insert_request(
        conn,
        name=workflow.name,
        kind=workflow.kind,
        owner=principal.name,
        state=RequestState.NEW.value,
        priority=workflow.priority,
        total_events=workflow.total_events,
        total_jobs=workflow.jobs,
        run_number=0,
        sites=workflow.sites.model_dump_json(),
        spec=spec_json,
        spec_sha256=sha,
        parent_id=None,
        created_at=now,
        updated_at=now,
    )
    run_number = getattr(workflow, "run_number", None) or request_id
    _check_seeds(workflow, run_number)
    q.set_run_number(conn, request_id, run_number)
    q.insert_allocations(conn, splitter.cut(workflow, request_id, run_number, now))
    q.insert_history(
        conn, request_id, None, RequestState.NEW.value, principal.name, "submitted", now
    )
    if producer is not None:  # what the producer merged already
        chain.feed(conn, request_id, producer, now)
    return request_id, True


def _check_seeds(workflow: Workflow, run_number: int) -> None:
    if isinstance(workflow, MonteCarloWorkflow) and workflow.seeds.policy == "run_lumi":
        last = job_seed(workflow, run_number, workflow.jobs - 1)
        if last > SEED_MAX:
            raise invalid_workflow(
                [
                    FieldError(
                        "run_number",
                        f"run {run_number} gives seeds above {SEED_MAX}; set a smaller run_number",
                    )
                ]
            )


def _existing(conn: sa.Connection, principal: Principal, name: str, sha: str) -> int:
    row = q.request_by_name(conn, name)
    assert row is not None
    if row.spec_sha256 != sha or row.owner != principal.name:
        raise Conflict(
            f"a different request named '{name}' exists (id {row.id}); choose another name",
            request_id=int(row.id),
        )
    return int(row.id)


def _store_clone(
    conn: sa.Connection,
    principal: Principal,
    source: sa.Row[Any],
    missing: list[sa.Row[Any]],
    reason: str,
) -> int:
    now = time.time()
    name = _clone_name(conn, source.name)
    spec = json.loads(source.spec)
    spec["name"] = name
    spec_json = json.dumps(spec, sort_keys=True, separators=(",", ":"))
    new_id = q.insert_request(
        conn,
        name=name,
        kind=source.kind,
        owner=source.owner,
        state=RequestState.NEW.value,
        priority=source.priority,
        total_events=sum(int(a.n_events) for a in missing),
        total_jobs=len(missing),
        run_number=source.run_number,
        sites=source.sites,
        spec=spec_json,
        spec_sha256=hashlib.sha256(spec_json.encode()).hexdigest(),
        parent_id=source.id,
        created_at=now,
        updated_at=now,
    )
    q.insert_allocations(conn, [_fresh_copy(a, new_id, now) for a in missing])
    why = f"clone of request {source.id} ({len(missing)} allocation(s) not produced)"
    q.insert_history(
        conn,
        new_id,
        None,
        RequestState.NEW.value,
        principal.name,
        f"{why}; {reason}".strip("; "),
        now,
    )
    return new_id


def _fresh_copy(a: sa.Row[Any], request_id: int, now: float) -> dict[str, Any]:
    return {
        "request_id": request_id,
        "job_index": a.job_index,
        "first_event": a.first_event,
        "n_events": a.n_events,
        "n_jobs": a.n_jobs,
        "seed": a.seed,
        "input_files": a.input_files,
        "state": "open",
        "lease_epoch": 0,
        "lease_expires": 0.0,
        "events_done": 0,
        "updated_at": now,
    }


def _clone_name(conn: sa.Connection, name: str) -> str:
    base = name.split(CLONE_SUFFIX)[0][:90]
    for n in range(1, 10_000):
        candidate = f"{base}{CLONE_SUFFIX}{n}"
        if q.request_by_name(conn, candidate) is None:
            return candidate
    raise Conflict(f"too many clones of '{name}'")


def _request_or_404(conn: sa.Connection, request_id: int) -> sa.Row[Any]:
    row = q.get_request(conn, request_id)
    if row is None:
        raise NotFound(f"no request {request_id}")
    return row


def _summary(row: sa.Row[Any], counters: Any) -> RequestSummary:
    return RequestSummary(
        id=row.id,
        name=row.name,
        kind=row.kind,
        owner=row.owner,
        state=row.state,
        priority=row.priority,
        total_events=row.total_events,
        total_jobs=row.total_jobs,
        run_number=row.run_number,
        parent_id=row.parent_id,
        created_at=row.created_at,
        updated_at=row.updated_at,
        counters=counters,
    )


def _allocation_info(a: sa.Row[Any], now: float) -> AllocationInfo:
    return AllocationInfo(
        allocation_id=a.id,
        request_id=a.request_id,
        job_index=a.job_index,
        first_event=a.first_event,
        n_events=a.n_events,
        seed=a.seed,
        state=a.state,
        leased=a.state == "open" and a.lease_expires >= now,
        agent=a.agent,
        lease_epoch=a.lease_epoch,
        lease_expires=a.lease_expires,
        events_done=a.events_done,
        job_state=a.job_state,
        reason=a.reason,
    )
