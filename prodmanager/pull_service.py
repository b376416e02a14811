"""ProdManager's side of the pull protocol: register, acquire, renew, report, complete, release,
and merged-file reports.

Guarantees, all enforced in the database so that several server processes can share it:

- an allocation is held by at most one agent: `acquire` locks free rows with
  `FOR UPDATE SKIP LOCKED` and leases them with an UPDATE that re-checks they are free;
- every lease has a random token; renew, report, complete and release must present it, so the
  agent that lost an expired lease is refused (409 `lease_lost`) once another agent holds it;
- a report sets `events_done` rather than adding to it, files are unique by LFN, and files of
  an earlier lease are superseded when the allocation is handed out again: events are never
  counted twice;
- an agent never holds more jobs than the capacity it registered (an allocation may hold
  several, `n_jobs`), but for the one allocation that takes it past its capacity.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
import time
from collections import Counter
from typing import Any

import sqlalchemy as sa

from prodmanager import chain, lifecycle, outputs, shares, splitter
from prodmanager.auth import Principal, require_role
from prodmanager.db import queries as q
from prodmanager.db.engine import Database
from prodmanager.errors import Forbidden, InvalidInput, LeaseLost, NotFound, ProdManagerError
from prodmanager.models import (
    AcquireRequest,
    AcquireResponse,
    AgentInfo,
    AgentRegistration,
    Allocation,
    AllocationAck,
    CompleteItem,
    CompleteMany,
    CompleteManyAck,
    CompleteOutcome,
    CompleteReport,
    InputFileRef,
    LeaseStatus,
    MergedAck,
    MergedReport,
    ProgressReport,
    ReleaseRequest,
    RenewRequest,
    RenewResponse,
    RenewResult,
    Role,
)
from prodmanager.states import AllocationState, RequestState, check_allocation_transition
from prodrequest.spec import Sites

log = logging.getLogger(__name__)
SPEC_CACHE_SIZE = 1000
TOUCH_S = 5.0


class PullService:
    def __init__(
        self,
        db: Database,
        lease_seconds: float = 300.0,
        max_lease_seconds: float = 3600.0,
        max_jobs_per_acquire: int = 1000,
        shares: dict[str, float] | None = None,
    ) -> None:
        self.db = db
        self.shares = shares or {}  # fair shares by request group (prodmanager.shares); none: priority only
        self.lease_seconds = lease_seconds
        self.max_lease_seconds = max_lease_seconds
        self.max_jobs_per_acquire = max_jobs_per_acquire
        self.bulk_complete = True  # complete_many's few-statement path (off: one by one, to compare)
        self._agent_owner: dict[str, str] = {}  # agent name -> token name; a binding never changes
        self._views: dict[int, dict[str, Any]] = {}  # request id -> what agents see of it
        self._running: set[int] = set()  # requests known to be past "assigned"
        self._touched: dict[str, float] = {}  # agent -> last time its last_seen was written
        self._lock = threading.Lock()

    # --- agents ---------------------------------------------------------------------------------

    def register(self, principal: Principal, reg: AgentRegistration) -> AgentInfo:
        """Register (or update) an agent; the first token to register a name owns it."""
        require_role(principal, Role.AGENT)
        sites = json.dumps(sorted(set(reg.sites)))

        def work(conn: sa.Connection) -> None:
            now = time.time()
            row = q.get_agent(conn, reg.name)
            if row is None:
                q.insert_agent(conn, reg.name, sites, reg.capacity, principal.name, now)
                return
            _check_owner(principal, reg.name, row.token_name)
            q.update_agent(conn, reg.name, sites, reg.capacity, now)

        try:
            self.db.transaction(work)
        except sa.exc.IntegrityError:
            self.db.transaction(work)  # a concurrent first registration won; update instead
        return next(a for a in self.agents(principal, _check=False) if a.name == reg.name)

    def agents(self, principal: Principal, _check: bool = True) -> list[AgentInfo]:
        if _check:
            require_role(principal, Role.OPERATOR)
        rows = self.db.read(lambda conn: q.list_agents(conn, time.time()))
        return [
            AgentInfo(
                name=r.name,
                sites=json.loads(r.sites),
                capacity=r.capacity,
                token_name=r.token_name,
                registered_at=r.registered_at,
                last_seen=r.last_seen,
                held=r.held,
            )
            for r in rows
        ]

    def check_agent(self, principal: Principal, name: str) -> None:
        """The caller must be the registered agent's owner (or an operator)."""
        self._agent(principal, name)

    def _agent(self, principal: Principal, name: str) -> None:
        """The caller must be the agent's owner (or an operator)."""
        require_role(principal, Role.AGENT)
        with self._lock:
            owner = self._agent_owner.get(name)
        if owner is None:
            row = self.db.read(lambda conn: q.get_agent(conn, name))
            if row is None:
                raise NotFound(f"agent '{name}' is not registered; register it first")
            owner = row.token_name
            with self._lock:
                self._agent_owner[name] = owner
        _check_owner(principal, name, owner)

    # --- acquire --------------------------------------------------------------------------------

    def acquire(
        self, principal: Principal, agent_name: str, req: AcquireRequest
    ) -> AcquireResponse:
        self._agent(principal, agent_name)
        lease_s = min(req.lease_seconds or self.lease_seconds, self.max_lease_seconds)
        # The whole answer is built inside the transaction: what is leased is what is delivered.
        allocations = self.db.transaction(lambda conn: self._acquire(conn, agent_name, req, lease_s))
        return AcquireResponse(allocations=allocations, lease_seconds=lease_s)

    def _acquire(
        self, conn: sa.Connection, agent_name: str, req: AcquireRequest, lease_s: float
    ) -> list[Allocation]:
        now = time.time()
        agent = q.get_agent(conn, agent_name)
        assert agent is not None
        self._touch(conn, agent_name, now)
        # Capacity, the request and quotas count jobs: an allocation may hold several (n_jobs).
        room = agent.capacity - q.held_count(conn, agent_name, now)
        jobs = min(req.jobs or room, room, self.max_jobs_per_acquire)
        if jobs <= 0:
            return []
        agent_sites = json.loads(agent.sites)
        budget = req.events
        token = secrets.token_hex(16)
        taken: list[Allocation] = []
        taken_jobs = 0
        candidates = []
        for request in q.acquirable_requests(conn):
            if not Sites.model_validate_json(request.sites).admits(agent_sites):
                continue
            try:
                candidates.append((request, self._view(request.id, conn)))
            except (ValueError, KeyError, TypeError) as exc:  # UnicodeEncodeError is a ValueError
                _unservable(conn, request, exc, now)
        # With shares: a first pass gives each group its part, a second fills what is left in order.
        quota = self._quotas(conn, candidates, jobs, now) if self.shares else None
        for first_pass in ([True, False] if quota is not None else [False]):
            for request, view in candidates:
                group = _group(view)
                limit = jobs - taken_jobs
                if first_pass:
                    limit = min(limit, quota.get(group, 0)) if quota is not None else limit
                    if limit <= 0:
                        continue
                rows = _lock_jobs(conn, request.id, now, limit, view["jobs_per_allocation"])
                if budget is not None:
                    rows = _within_budget(rows, budget, first=not taken)
                    budget -= sum(int(r.n_events) for r in rows)
                if not rows and request.state != RequestState.NEW and not first_pass:
                    # Safety net: finish a request whose last completion could not settle it.
                    lifecycle.settle(conn, request.id, "prodmanager", now)
                if rows:
                    try:
                        with conn.begin_nested():  # a row that cannot be delivered leases nothing
                            leased = self._lease(conn, request, rows, view, agent_name, token, lease_s, now)
                    except (ValueError, KeyError, TypeError) as exc:  # pydantic's ValidationError too
                        _unservable(conn, request, exc, now)
                        continue
                    taken += leased
                    leased_jobs = sum(a.n_jobs for a in leased)
                    taken_jobs += leased_jobs
                    if first_pass and quota is not None:
                        quota[group] -= leased_jobs
                if taken_jobs >= jobs or (budget is not None and budget <= 0):
                    return taken
        return taken

    def _quotas(self, conn: sa.Connection, candidates: list[tuple[sa.Row[Any], dict[str, Any]]], jobs: int,
                now: float) -> dict[str, int]:
        """Each group's part of this acquire (prodmanager.shares), from the leases held now."""
        leased = q.leased_by_request(conn, [r.id for r, _v in candidates], now)
        held: dict[str, int] = {}
        for request, view in candidates:
            held[_group(view)] = held.get(_group(view), 0) + leased.get(request.id, 0)
        return shares.quotas(jobs, held, [_group(v) for _r, v in candidates], self.shares)

    def _lease(
        self,
        conn: sa.Connection,
        request: sa.Row[Any],
        rows: list[sa.Row[Any]],
        view: dict[str, Any],
        agent_name: str,
        token: str,
        lease_s: float,
        now: float,
    ) -> list[Allocation]:
        """Lease these rows of one request to the agent; the allocations as delivered."""
        ids = [int(r.id) for r in rows]
        q.lease(conn, ids, agent_name, token, lease_s, now)
        relet = [int(r.id) for r in rows if r.lease_epoch > 0]
        if relet:
            q.supersede_files(conn, relet)
        if request.state == RequestState.NEW:
            lifecycle.transition(
                conn,
                request.id,
                request.state,
                RequestState.ASSIGNED,
                f"agent:{agent_name}",
                "first allocation handed out",
                now,
            )
        order = {allocation_id: n for n, allocation_id in enumerate(ids)}
        leased = sorted(q.leased_rows(conn, ids, token), key=lambda r: order[int(r.id)])
        return [_allocation(r, view) for r in leased]

    def _touch(self, conn: sa.Connection, agent_name: str, now: float) -> None:
        """Record that the agent is alive (at most every TOUCH_S seconds per server process)."""
        if now - self._touched.get(agent_name, 0.0) < TOUCH_S:
            return
        q.touch_agent(conn, agent_name, now)
        with self._lock:
            self._touched[agent_name] = now

    def _view(self, request_id: int, conn: sa.Connection | None = None) -> dict[str, Any]:
        """What agents see of a request; ValueError (or KeyError) when it cannot be served."""
        with self._lock:
            view = self._views.get(request_id)
        if view is None:
            read = lambda c: q.request_spec(c, request_id)  # noqa: E731
            row = read(conn) if conn is not None else self.db.read(read)
            if row is None:
                raise KeyError(f"no request {request_id}")
            spec = json.loads(row.spec)
            view = {
                "name": row.name,
                "run_number": row.run_number,
                "kind": spec["kind"],
                "spec": splitter.agent_view(spec),
                "jobs_per_allocation": splitter.jobs_per_allocation(spec),
            }
            # What the answer will be encoded as: a lone surrogate or NaN fails here, not after
            # the allocations were leased.
            json.dumps(view, ensure_ascii=False, allow_nan=False).encode("utf-8")
            with self._lock:
                if len(self._views) >= SPEC_CACHE_SIZE:
                    self._views.clear()
                self._views[request_id] = view
        return view

    # --- leases ---------------------------------------------------------------------------------

    def renew(self, principal: Principal, agent_name: str, req: RenewRequest) -> RenewResponse:
        self._agent(principal, agent_name)
        pairs = [(lease.allocation_id, lease.lease_token) for lease in req.leases]
        ids = [p[0] for p in pairs]

        def work(conn: sa.Connection) -> list[sa.Row[Any]]:
            now = time.time()
            self._touch(conn, agent_name, now)
            q.renew(conn, agent_name, pairs, now)
            return list(q.lease_status(conn, ids)) if ids else []

        rows = {int(r.id): r for r in self.db.transaction(work)}
        return RenewResponse(
            results=[_renew_result(i, rows.get(i), t, agent_name) for i, t in pairs]
        )

    def report(
        self, principal: Principal, agent_name: str, allocation_id: int, report: ProgressReport
    ) -> AllocationAck:
        self._agent(principal, agent_name)

        def work(conn: sa.Connection) -> AllocationAck:
            now = time.time()
            row = _held(conn, allocation_id, q.get_allocation(conn, allocation_id), report.lease_token, agent_name)
            self._check_events(row, report.events_done)
            done = q.record_progress(
                conn,
                allocation_id,
                report.lease_token,
                agent_name,
                report.events_done,
                report.job_state,
                now,
            )
            if not done:
                raise _lost(conn, allocation_id, report.lease_token, agent_name)
            accepted, duplicate = outputs.store_files(conn, row, report.files, agent_name, now)
            self._mark_running(conn, row.request_id, agent_name, now)
            return _ack(row, AllocationState.OPEN, report.events_done, accepted, duplicate)

        return self.db.transaction(work)

    def complete(
        self, principal: Principal, agent_name: str, allocation_id: int, report: CompleteReport
    ) -> AllocationAck:
        self._agent(principal, agent_name)
        ack, request_id = self.db.transaction(
            lambda conn: self._complete_in(conn, agent_name, allocation_id, report, time.time())
        )
        if request_id >= 0:
            self._settle(request_id, agent_name)
        return ack

    def complete_many(
        self, principal: Principal, agent_name: str, batch: CompleteMany
    ) -> CompleteManyAck:
        """Complete many allocations in one transaction; each item succeeds or fails alone.

        Each item runs in a savepoint: one that is refused (lease lost, unknown, too many
        events, a file registered elsewhere) gets the error the single call would raise and
        leaves nothing behind; the others are committed together.
        """
        self._agent(principal, agent_name)

        def work(conn: sa.Connection) -> tuple[list[CompleteOutcome], set[int]]:
            now = time.time()
            bulk, settle = self._complete_bulk(conn, agent_name, batch.items, now) if self.bulk_complete else ({}, set())
            results: list[CompleteOutcome] = []
            for n, item in enumerate(batch.items):
                if n in bulk:
                    results.append(CompleteOutcome(allocation_id=item.allocation_id, ack=bulk[n]))
                    continue
                try:
                    with conn.begin_nested():
                        ack, request_id = self._complete_in(conn, agent_name, item.allocation_id, item, now)
                except ProdManagerError as exc:
                    results.append(CompleteOutcome(
                        allocation_id=item.allocation_id, error=exc.code,
                        status=exc.details.get("status"), detail=exc.message,
                    ))
                    continue
                results.append(CompleteOutcome(allocation_id=item.allocation_id, ack=ack))
                if request_id >= 0:
                    settle.add(request_id)
            return results, settle

        results, settle = self.db.transaction(work)
        for request_id in sorted(settle):
            self._settle(request_id, agent_name)
        return CompleteManyAck(results=results)

    def _complete_bulk(
        self, conn: sa.Connection, agent_name: str, items: list[CompleteItem], now: float
    ) -> tuple[dict[int, AllocationAck], set[int]]:
        """The plain completions of a batch in a few statements: held allocations, events within
        range, outputs all new. Their acks by position, and their requests; the rest (repeats,
        lost leases, duplicate files, refusals) goes one by one, as the single call does."""
        rows = q.lock_allocations(conn, [item.allocation_id for item in items])
        ids = Counter(item.allocation_id for item in items)
        lfns = [f.lfn for item in items for f in item.files]
        known = {f.lfn for f in q.files_by_lfn(conn, lfns)} if lfns else set()
        plain: dict[int, tuple[CompleteItem, sa.Row[Any]]] = {}
        for n, item in enumerate(items):
            row = rows.get(item.allocation_id)
            own = [f.lfn for f in item.files]
            if (row is None or ids[item.allocation_id] > 1 or row.state != AllocationState.OPEN
                    or row.lease_token != item.lease_token or row.agent != agent_name
                    or (self._view(row.request_id)["kind"] == "montecarlo" and item.events_done > row.n_events)
                    or len(set(own)) != len(own) or known.intersection(own)):
                continue
            plain[n] = (item, row)
        if len({f.lfn for item, _row in plain.values() for f in item.files}) != sum(
                len(item.files) for item, _row in plain.values()):
            return {}, set()  # one file reported for two allocations: the one-by-one path judges
        groups: dict[tuple[str, int], list[int]] = {}
        for item, _row in plain.values():
            groups.setdefault((item.lease_token, item.events_done), []).append(item.allocation_id)
        for (token, events), group in groups.items():
            if q.finish_many(conn, group, token, agent_name, AllocationState.DONE.value, events, now) != len(group):
                raise RuntimeError("locked allocations changed under the lock")
        q.insert_files(conn, [outputs.new_file_row(row, f, agent_name, now)
                              for item, row in plain.values() for f in item.files])
        for request_id in sorted({int(row.request_id) for _item, row in plain.values()}):
            self._mark_running(conn, request_id, agent_name, now)
        acks = {n: _ack(row, AllocationState.DONE, item.events_done, len(item.files), 0)
                for n, (item, row) in plain.items()}
        return acks, {int(row.request_id) for _item, row in plain.values()}

    def _complete_in(
        self, conn: sa.Connection, agent_name: str, allocation_id: int, report: CompleteReport, now: float
    ) -> tuple[AllocationAck, int]:
        """Finish one allocation; the request id to settle afterwards (-1: a repeated call)."""
        row = q.get_allocation(conn, allocation_id)
        if _already(row, report.lease_token, agent_name, AllocationState.DONE):
            return _ack(row, AllocationState.DONE, row.events_done, 0, len(report.files)), -1
        row = _held(conn, allocation_id, row, report.lease_token, agent_name)
        check_allocation_transition(row.state, AllocationState.DONE)
        self._check_events(row, report.events_done)
        finished = q.finish(
            conn,
            allocation_id,
            report.lease_token,
            agent_name,
            AllocationState.DONE.value,
            report.events_done,
            None,
            now,
        )
        if not finished:
            raise _lost(conn, allocation_id, report.lease_token, agent_name)
        accepted, duplicate = outputs.store_files(conn, row, report.files, agent_name, now)
        self._mark_running(conn, row.request_id, agent_name, now)
        return _ack(row, AllocationState.DONE, report.events_done, accepted, duplicate), int(row.request_id)

    def release(
        self, principal: Principal, agent_name: str, allocation_id: int, req: ReleaseRequest
    ) -> AllocationAck:
        self._agent(principal, agent_name)
        target = AllocationState.FAILED if req.failed else AllocationState.OPEN

        def work(conn: sa.Connection) -> tuple[AllocationAck, int]:
            now = time.time()
            row = q.get_allocation(conn, allocation_id)
            if req.failed and _already(row, req.lease_token, agent_name, AllocationState.FAILED):
                return _ack(row, AllocationState.FAILED, 0, 0, 0), -1
            row = _held(conn, allocation_id, row, req.lease_token, agent_name)
            check_allocation_transition(row.state, target)
            reason = req.reason or ("failed" if req.failed else "released")
            if req.failed:
                changed = q.finish(
                    conn,
                    allocation_id,
                    req.lease_token,
                    agent_name,
                    target.value,
                    None,
                    reason,
                    now,
                )
            else:
                changed = q.release(conn, allocation_id, req.lease_token, agent_name, reason, now)
            if not changed:
                raise _lost(conn, allocation_id, req.lease_token, agent_name)
            return _ack(row, target, 0, 0, 0), int(row.request_id)

        ack, request_id = self.db.transaction(work)
        if req.failed and request_id >= 0:
            self._settle(request_id, agent_name)
        return ack

    def _settle(self, request_id: int, agent_name: str) -> None:
        """After a commit that finished an allocation: complete the request if nothing is open.

        Run in its own transaction after the commit, so that of two agents finishing the last
        two allocations at once, the later one sees both finished; no request-row lock is
        taken while other allocations are still open.
        """
        if self.db.read(lambda conn: q.has_open(conn, request_id)):
            return  # the common case, without taking a write transaction
        actor = f"agent:{agent_name}"
        self.db.transaction(lambda conn: lifecycle.settle(conn, request_id, actor, time.time()))

    def _mark_running(
        self, conn: sa.Connection, request_id: int, agent_name: str, now: float
    ) -> None:
        if request_id in self._running:
            return
        # Remembered only once seen committed: a change made here may still be rolled back.
        if lifecycle.mark_running(conn, request_id, f"agent:{agent_name}", now):
            with self._lock:
                self._running.add(request_id)

    def _check_events(self, row: sa.Row[Any], events_done: int) -> None:
        if self._view(row.request_id)["kind"] == "montecarlo" and events_done > row.n_events:
            raise InvalidInput(
                f"events_done {events_done} is more than the allocation's {row.n_events} events",
                errors=[{"path": "events_done", "message": f"at most {row.n_events}"}],
            )

    # --- merged files ---------------------------------------------------------------------------

    def report_merged(
        self, principal: Principal, agent_name: str, report: MergedReport
    ) -> MergedAck:
        """Register merged files; each one retires the unmerged files it was made from."""
        self._agent(principal, agent_name)

        def work(conn: sa.Connection) -> MergedAck:
            now = time.time()
            request = q.get_request(conn, report.request_id)
            if request is None:
                raise NotFound(f"no request {report.request_id}")
            accepted = duplicate = 0
            for merged in report.files:
                if outputs.store_merged(conn, report.request_id, merged, agent_name, now):
                    accepted += 1
                else:
                    duplicate += 1
            if accepted:
                chain.hand_on(conn, report.request_id, now)  # to requests consuming its dataset
            state = outputs.close_if_merged(conn, report.request_id, f"agent:{agent_name}", now)
            return MergedAck(
                request_id=report.request_id,
                files_accepted=accepted,
                files_duplicate=duplicate,
                request_state=state,
            )

        return self.db.transaction(work)


# --- helpers run inside transactions ------------------------------------------------------------


def _group(view: dict[str, Any]) -> str:
    return str(view["spec"].get("group") or "default")


def _check_owner(principal: Principal, agent_name: str, owner: str) -> None:
    if not principal.is_operator and owner != principal.name:
        raise Forbidden(
            f"agent '{agent_name}' was registered by token '{owner}', not '{principal.name}'"
        )


def _lock_jobs(
    conn: sa.Connection, request_id: int, now: float, jobs: int, per_row: int
) -> list[sa.Row[Any]]:
    """Lock a request's leading free rows until their jobs reach `jobs` (at least one row, so a
    single big allocation is never starved; the last may go past `jobs`). Rows hold at most
    `per_row` jobs, so each query locks no more rows than could be needed; shorter rows (the
    last of a request, expired leases of another size) make it ask for more."""
    rows: list[sa.Row[Any]] = []
    got = 0
    while got < jobs:
        limit = -(-(jobs - got) // max(1, per_row))
        batch = q.lock_available(conn, request_id, now, limit, exclude=[int(r.id) for r in rows])
        for row in batch:
            if got >= jobs:
                break  # locked, not leased: a row longer than `per_row` (a stale spec) filled it
            rows.append(row)
            got += int(row.n_jobs)
        if len(batch) < limit:
            break  # the request has no more free rows
    return rows


def _within_budget(rows: list[sa.Row[Any]], budget: int, first: bool) -> list[sa.Row[Any]]:
    """The leading rows whose events fit in `budget`; at least one row when `first`, so an
    agent with a small event budget is not starved by large allocations."""
    kept: list[sa.Row[Any]] = []
    for row in rows:
        if budget - int(row.n_events) < 0 and not (first and not kept):
            break
        kept.append(row)
        budget -= int(row.n_events)
    return kept


def _allocation(row: sa.Row[Any], view: dict[str, Any]) -> Allocation:
    files = json.loads(row.input_files) if row.input_files else []
    return Allocation(
        allocation_id=row.id,
        lease_token=row.lease_token,
        lease_expires=row.lease_expires,
        lease_epoch=row.lease_epoch,
        request_id=row.request_id,
        request_name=view["name"],
        kind=view["kind"],
        job_index=row.job_index,
        run_number=view["run_number"],
        first_event=row.first_event,
        n_events=row.n_events,
        n_jobs=row.n_jobs,
        seed=row.seed,
        input_files=[InputFileRef(**f) for f in files],
        spec=view["spec"],
    )


def _unservable(conn: sa.Connection, request: sa.Row[Any], exc: Exception, now: float) -> None:
    """A request whose stored spec cannot be delivered: paused, with why, so it blocks no one."""
    reason = f"its stored workflow cannot be delivered to agents: {exc.__class__.__name__}: {exc}"
    reason = reason.encode("utf-8", "backslashreplace").decode("utf-8")
    log.error("request %s %s", request.id, reason)
    lifecycle.transition(
        conn, request.id, request.state, RequestState.PAUSED, lifecycle.SYSTEM, reason[:500], now
    )


def _renew_result(
    allocation_id: int, row: sa.Row[Any] | None, token: str, agent_name: str
) -> RenewResult:
    if row is not None and row.state == AllocationState.RECALLED:
        return RenewResult(allocation_id=allocation_id, status=LeaseStatus.RECALLED)
    if (
        row is not None
        and row.state == AllocationState.OPEN
        and row.lease_token == token
        and row.agent == agent_name
    ):
        return RenewResult(
            allocation_id=allocation_id, status=LeaseStatus.OK, lease_expires=row.lease_expires
        )
    if any(_already(row, token, agent_name, done) for done in (AllocationState.DONE, AllocationState.FAILED)):
        return RenewResult(allocation_id=allocation_id, status=LeaseStatus.FINISHED)
    return RenewResult(allocation_id=allocation_id, status=LeaseStatus.EXPIRED)


def _held(
    conn: sa.Connection, allocation_id: int, row: sa.Row[Any] | None, lease_token: str, agent_name: str
) -> sa.Row[Any]:
    """The allocation row, if this agent holds it under this token; LeaseLost otherwise."""
    if (
        row is None
        or row.state != AllocationState.OPEN
        or row.lease_token != lease_token
        or row.agent != agent_name
    ):
        raise _lost(conn, allocation_id, lease_token, agent_name)
    return row


def _lost(conn: sa.Connection, allocation_id: int, token: str, agent_name: str) -> Exception:
    row = q.get_allocation(conn, allocation_id)
    if row is None:
        return NotFound(f"no allocation {allocation_id}")
    if row.state == AllocationState.RECALLED:
        return LeaseLost(
            f"allocation {allocation_id} was recalled: its request was aborted", status="recalled"
        )
    if row.lease_token != token or row.agent != agent_name:
        return LeaseLost(
            f"lease on allocation {allocation_id} is no longer yours: it expired and the "
            "allocation was released or handed to another agent",
            status="expired",
        )
    return LeaseLost(f"allocation {allocation_id} is already {row.state}", status="expired")


def _already(row: sa.Row[Any] | None, token: str, agent_name: str, state: AllocationState) -> bool:
    """A repeated final call (the answer to the first was lost): accept it again, change nothing."""
    return (
        row is not None
        and row.state == state
        and row.lease_token == token
        and row.agent == agent_name
    )


def _ack(
    row: sa.Row[Any], state: AllocationState, events: int, accepted: int, duplicate: int
) -> AllocationAck:
    return AllocationAck(
        allocation_id=row.id,
        state=state.value,
        events_done=events,
        files_accepted=accepted,
        files_duplicate=duplicate,
    )
