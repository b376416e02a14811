"""ProdMgrInterface: the agent's side of the pull protocol with ProdManager.

Each tick it renews the leases of the allocations it holds (an expired or recalled lease kills
their jobs), completes allocations whose jobs are done (reporting events and files) or releases
them as failed when their jobs exhausted retries, and acquires new work: only as much as the
agent can run soon (room per site minus jobs already waiting), so it never hoards. Merged files
are reported as they are accepted.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field

from prodagent.db.schema import pa_file
from prodagent.jobs import states, store
from prodagent.runtime.component import Component, Context, handles
from prodmanager import errors as pm_errors
from prodmanager.client import ProdManagerClient
from prodmanager.models import Allocation, CompleteOutcome, LeaseStatus, MergedFile, OutputFile

HELD = ("acquired", "active")
RENEW_CHUNK = 5000  # leases per renew call (ProdManager takes at most 10,000)
COMPLETE_PER_CALL = 100  # allocations per bulk completion call (ProdManager takes at most 500)


class ProdMgrSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tick_s: float = Field(3.0, gt=0)
    queue_factor: float = Field(1.0, ge=0)  # hold work for slots * (1 + factor) jobs
    max_acquire: int = Field(1000, ge=1)  # allocations per acquire call
    lease_s: float | None = Field(None, gt=0)  # ask for this lease; None: the server's default
    sites: list[str] = Field(default_factory=list)  # sites announced at registration
    complete_workers: int = Field(4, ge=1)  # bulk completion calls to ProdManager at once
    finish_budget_s: float = Field(10.0, gt=0)  # per tick: start no completion after this long
    renew_interval_s: float = Field(0.0, ge=0)  # renew held leases at most this often; 0: every tick


class ProdMgrInterface(Component):
    name = "ProdMgrInterface"
    Settings = ProdMgrSettings

    def setup(self) -> None:
        pm = self.config.prodmanager
        token = pm.token or (pm.token_file.read_text().strip() if pm.token_file else None)
        self.client = ProdManagerClient(pm.url, token, retries=2, timeout=10.0)
        self.registered_capacity = 0
        self.agent = self.config.agent.name
        self.pool = ThreadPoolExecutor(self.settings.complete_workers, thread_name_prefix="complete")
        self.next_renew = 0.0
        self.unsettled: dict[str, Allocation] = {}  # acquired, not yet seen committed

    def teardown(self) -> None:
        self.pool.shutdown()
        self.client.close()

    # -- periodic work ----------------------------------------------------------------------

    def tick(self, ctx: Context) -> None:
        try:
            if not store.sites(ctx.conn, self.agent):
                return  # ResourceMonitor has not measured the batch system yet
            if self._capacity(ctx) != self.registered_capacity:
                self._register(ctx)
            self._record_unsettled(ctx)
            self._renew(ctx)
            self._finish(ctx)
            self._acquire(ctx)
        except (pm_errors.ProdManagerError, OSError) as exc:
            self.log.warning("ProdManager call failed (%s); will retry: %s", exc.__class__.__name__, exc)

    @handles("ResourcesAvailable")
    def on_resources(self, ctx: Context, payload: dict[str, Any]) -> None:
        try:
            if self.registered_capacity:
                self._acquire(ctx)
        except (pm_errors.ProdManagerError, OSError) as exc:
            self.log.warning("acquire failed: %s", exc)

    def _capacity(self, ctx: Context) -> int:
        slots = sum(s.slots for s in store.sites(ctx.conn, self.agent))
        return max(1, int(slots * (1 + self.settings.queue_factor)))

    def _register(self, ctx: Context) -> None:
        sites = self.settings.sites or [s.site for s in store.sites(ctx.conn, self.agent)] or ["local"]
        capacity = self._capacity(ctx)
        self.client.register_agent(self.agent, sites, capacity)
        self.registered_capacity = capacity
        self.log.info("registered with ProdManager at %s, capacity %d", self.config.prodmanager.url, capacity)

    def _renew(self, ctx: Context) -> None:
        if time.monotonic() < self.next_renew:
            return
        held = store.allocations_in(ctx.conn, self.agent, HELD)
        if not held:
            return
        leases = [(int(a.id), a.lease_token) for a in held]
        results = [r for i in range(0, len(leases), RENEW_CHUNK)
                   for r in self.client.renew(self.agent, leases[i:i + RENEW_CHUNK])]
        self.next_renew = time.monotonic() + self.settings.renew_interval_s
        by_id = {str(r.allocation_id): r for r in results}
        renewed: dict[float, list[str]] = defaultdict(list)  # new expiry -> allocations
        for alloc in held:
            result = by_id.get(alloc.id)
            if result is None:
                continue
            if result.status == LeaseStatus.OK:
                renewed[result.lease_expires or alloc.lease_expires_at].append(alloc.id)
                continue
            state = "recalled" if result.status == LeaseStatus.RECALLED else "lost"
            store.set_allocation(ctx.conn, alloc.id, state=state)
            live = [j.id for j in self._jobs_of(ctx, alloc.id) if j.state not in states.TERMINAL | states.DONE_OK]
            if live:
                ctx.publish("KillJobs", {"job_ids": live, "reason": f"allocation {alloc.id} {state} by ProdManager"})
            self.log.warning("allocation %s %s: %d job(s) to kill", alloc.id, state, len(live))
        for expires, ids in renewed.items():  # one statement per distinct expiry, not per allocation
            store.set_allocations(ctx.conn, ids, lease_expires_at=expires)

    def _jobs_of(self, ctx: Context, allocation_id: str) -> list[Any]:
        return list(ctx.conn.execute(sa.select(store.J).where(store.J.c.allocation_id == allocation_id)))

    def _finish(self, ctx: Context, only: list[str] | None = None, budget_s: float | None = None) -> None:
        """Complete allocations whose jobs all succeeded, release those whose jobs all ended.

        One grouped query finds them (among `only` if given); completions go to ProdManager in
        bulk calls, `complete_workers` at a time, and none starts after `budget_s` (default
        `finish_budget_s`), so acquiring is never starved.
        """
        if only is None:
            active = {a.id: a for a in store.allocations_in(ctx.conn, self.agent, ["active"])}
        else:
            active = {a.id: a for a in store.allocations(ctx.conn, only) if a.state == "active"}
        if not active:
            return
        to_complete: list[tuple[Any, int]] = []
        for alloc_id, total, ok, ended, events in ctx.conn.execute(self._job_summary(only)):
            alloc = active.get(alloc_id)
            if alloc is None:
                continue  # became active since the first query: next tick
            if ok == total:
                to_complete.append((alloc, int(events or 0)))
            elif ended == total:
                jobs = self._jobs_of(ctx, alloc.id)
                failed = [j.name for j in jobs if j.state in (states.EXHAUSTED, states.KILLED)]
                with contextlib.suppress(pm_errors.LeaseLost):
                    self.client.release(self.agent, (int(alloc.id), alloc.lease_token), failed=True,
                                        reason=f"jobs failed: {', '.join(failed)}"[:500])
                store.set_allocation(ctx.conn, alloc.id, state="failed")
        if to_complete:
            budget = self.settings.finish_budget_s if budget_s is None else budget_s
            self._complete(ctx, sorted(to_complete, key=lambda pair: pair[0].acquired_at), budget)

    def _job_summary(self, only: list[str] | None = None) -> sa.Select:
        """Per active allocation of this agent: jobs, jobs done, jobs ended, events done."""
        J, A = store.J, store.pa_allocation
        ended = states.DONE_OK | {states.EXHAUSTED, states.KILLED}
        query = (
            sa.select(
                J.c.allocation_id, sa.func.count(),
                sa.func.sum(sa.case((J.c.state.in_(list(states.DONE_OK)), 1), else_=0)),
                sa.func.sum(sa.case((J.c.state.in_(list(ended)), 1), else_=0)),
                sa.func.sum(J.c.events_done),
            )
            .select_from(J.join(A, A.c.id == J.c.allocation_id))
            .where(A.c.agent == self.agent, A.c.state == "active")
            .group_by(J.c.allocation_id)
        )
        return query if only is None else query.where(J.c.allocation_id.in_(only))

    def _complete(self, ctx: Context, todo: list[tuple[Any, int]], budget_s: float) -> None:
        deadline = time.monotonic() + budget_s
        chunk = COMPLETE_PER_CALL * self.settings.complete_workers
        for i in range(0, len(todo), chunk):
            if time.monotonic() > deadline:
                return  # the rest next tick
            self._complete_chunk(ctx, todo[i:i + chunk], deadline)

    def _complete_chunk(self, ctx: Context, todo: list[tuple[Any, int]], deadline: float) -> None:
        """Complete with ProdManager, `COMPLETE_PER_CALL` allocations per call, calls in parallel."""
        files = self._output_files(ctx, [alloc.id for alloc, _events in todo])
        calls = [todo[i:i + COMPLETE_PER_CALL] for i in range(0, len(todo), COMPLETE_PER_CALL)]

        def complete(call: list[tuple[Any, int]]) -> list[CompleteOutcome] | Exception | None:
            if time.monotonic() > deadline:
                return None  # next tick
            try:
                return self.client.complete_many(self.agent, [
                    ((int(alloc.id), alloc.lease_token), events, files.get(alloc.id, [])) for alloc, events in call
                ])
            except (pm_errors.ProdManagerError, OSError) as exc:
                return exc

        done: dict[int, list[str]] = defaultdict(list)  # events -> allocations
        lost: list[str] = []
        error: Exception | None = None
        for call, answer in zip(calls, self.pool.map(complete, calls), strict=True):
            if answer is None:
                continue
            if isinstance(answer, Exception):
                error = error or answer
                continue
            for (alloc, events), outcome in zip(call, answer, strict=True):
                if outcome.ack is not None:
                    done[events].append(alloc.id)
                elif outcome.error == pm_errors.LeaseLost.code:
                    self.log.warning("allocation %s: lease lost before completion; its work is refused", alloc.id)
                    lost.append(alloc.id)
                else:  # kept active: tried again next tick, the others are not held back
                    self.log.error("allocation %s: ProdManager refused its completion (%s): %s",
                                   alloc.id, outcome.error, outcome.detail)
        for events, ids in done.items():
            store.set_allocations(ctx.conn, ids, state="done", events_reported=events)
        store.set_allocations(ctx.conn, lost, state="lost")
        if error is not None:
            raise error  # as before: the tick logs it and tries again next time

    def _output_files(self, ctx: Context, allocation_ids: list[str]) -> dict[str, list[OutputFile]]:
        """The unmerged files of these allocations' jobs, per allocation."""
        rows = ctx.conn.execute(
            sa.select(store.J.c.allocation_id, pa_file)
            .select_from(pa_file.join(store.J, store.J.c.id == pa_file.c.job_id))
            .where(store.J.c.allocation_id.in_(allocation_ids), pa_file.c.kind == "unmerged")
            .order_by(pa_file.c.id)
        )
        out: dict[str, list[OutputFile]] = defaultdict(list)
        for r in rows:
            out[r.allocation_id].append(
                OutputFile(lfn=r.lfn, size=r.size, checksum=f"adler32:{r.adler32}", events=r.events)
            )
        return out

    def _acquire(self, ctx: Context) -> None:
        J = store.J
        waiting = int(ctx.conn.execute(
            sa.select(sa.func.count()).where(J.c.agent == self.agent, J.c.state.in_(sorted(states.LIVE)),
                                             J.c.job_type == "production")
        ).scalar() or 0)
        room = min(self.settings.max_acquire, self._capacity(ctx) - waiting)
        if room <= 0:
            return
        allocations = self.client.acquire(self.agent, jobs=room, lease_seconds=self.settings.lease_s)
        if not allocations:
            return
        self.unsettled.update({str(a.allocation_id): a for a in allocations})
        fresh = self._store(ctx, allocations)
        if fresh:
            ctx.publish("AllocationAcquired", {"allocation_ids": [str(a.allocation_id) for a in fresh]})
            self.log.info("acquired %d allocation(s) (room for %d)", len(fresh), room)

    def _record_unsettled(self, ctx: Context) -> None:
        """Record again what an earlier acquire got if its transaction was rolled back.

        A lock conflict re-runs the whole tick (or message batch) after the rollback; without
        this, the allocations of the first try would stay leased to this agent, unknown to it,
        until their leases ran out. Called first thing in a tick, whose transaction has written
        nothing yet, so what it finds was committed: those allocations are settled. (Not from a
        handler: an earlier message of the same batch may have written them, uncommitted.)
        """
        if not self.unsettled:
            return
        A = store.pa_allocation
        for known in ctx.conn.execute(sa.select(A.c.id).where(A.c.id.in_(sorted(self.unsettled)))).scalars():
            self.unsettled.pop(known, None)
        if not self.unsettled:
            return
        lost = list(self.unsettled.values())
        fresh = self._store(ctx, lost)
        if fresh:
            ctx.publish("AllocationAcquired", {"allocation_ids": [str(a.allocation_id) for a in fresh]})
            self.log.warning("recorded again %d allocation(s) acquired in a transaction that was rolled back",
                             len(fresh))

    def _store(self, ctx: Context, allocations: list[Allocation]) -> list[Allocation]:
        """Record allocations in bulk; return the new ones (those already known only take the new lease)."""
        A = store.pa_allocation
        ids = sorted({str(a.allocation_id) for a in allocations})
        known = set(ctx.conn.execute(
            sa.select(A.c.id).where(A.c.id.in_(ids)).order_by(A.c.id).with_for_update()
        ).scalars())
        now = time.time()
        specs: dict[int, str] = {}
        fresh: list[Allocation] = []
        rows: list[dict[str, Any]] = []
        for a in allocations:
            if str(a.allocation_id) in known:
                # Handed out again after our lease lapsed: the old attempt's jobs were killed.
                store.set_allocation(ctx.conn, str(a.allocation_id), lease_token=a.lease_token,
                                     lease_expires_at=a.lease_expires)
                continue
            if a.request_id not in specs:
                specs[a.request_id] = json.dumps(a.spec)
            rows.append({
                "id": str(a.allocation_id), "agent": self.agent, "request_id": str(a.request_id),
                "request_name": a.request_name, "lease_token": a.lease_token, "lease_expires_at": a.lease_expires,
                "workflow": specs[a.request_id], "first_event": a.first_event, "n_events": a.n_events,
                "run": a.run_number, "seed": a.seed, "job_index": a.job_index,
                "input_files": json.dumps([f.model_dump() for f in a.input_files]), "state": "acquired",
                "acquired_at": now, "updated_at": now,
            })
            known.add(str(a.allocation_id))
            fresh.append(a)
        if rows:
            ctx.conn.execute(A.insert(), rows)
        return fresh

    # -- merged files ------------------------------------------------------------------------

    @handles("MergeAccepted")
    def on_merge_accepted(self, ctx: Context, payload: dict[str, Any]) -> None:
        merged = ctx.conn.execute(sa.select(pa_file).where(pa_file.c.id == payload["file_id"])).first()
        if merged is None or merged.reported:
            return
        self._complete_inputs(ctx, int(payload["merge_job_id"]))
        inputs = ctx.conn.execute(
            sa.select(pa_file.c.lfn).where(pa_file.c.merge_job_id == payload["merge_job_id"]).order_by(pa_file.c.id)
        ).scalars().all()
        dataset = store.dataset(ctx.conn, merged.dataset_id)
        assert dataset is not None
        try:
            self.client.report_merged(self.agent, int(dataset.request_id), [MergedFile(
                lfn=merged.lfn, size=merged.size, checksum=f"adler32:{merged.adler32}", events=merged.events,
                inputs=list(inputs),
            )])
        except pm_errors.Conflict as exc:
            self.log.warning("merged file %s: ProdManager says %s (already reported?)", merged.lfn, exc)
        ctx.conn.execute(pa_file.update().where(pa_file.c.id == merged.id).values(reported=True))

    def _complete_inputs(self, ctx: Context, merge_job_id: int) -> None:
        """ProdManager takes a merged file only when the allocations of all its inputs are done:
        complete those still active now, rather than wait for a tick to reach them."""
        J, A = store.J, store.pa_allocation
        pending = ctx.conn.execute(
            sa.select(A.c.id).distinct()
            .select_from(pa_file.join(J, J.c.id == pa_file.c.job_id).join(A, A.c.id == J.c.allocation_id))
            .where(pa_file.c.merge_job_id == merge_job_id, A.c.state == "active")
        ).scalars().all()
        if pending:
            self._finish(ctx, only=sorted(pending), budget_s=float("inf"))

