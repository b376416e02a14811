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
from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field

from prodagent.db.schema import pa_file
from prodagent.jobs import states, store
from prodagent.runtime.component import Component, Context, handles
from prodmanager import errors as pm_errors
from prodmanager.client import ProdManagerClient
from prodmanager.models import Allocation, LeaseStatus, MergedFile, OutputFile

HELD = ("acquired", "active")


class ProdMgrSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tick_s: float = Field(3.0, gt=0)
    queue_factor: float = Field(1.0, ge=0)  # hold work for slots * (1 + factor) jobs
    max_acquire: int = Field(1000, ge=1)  # allocations per acquire call
    lease_s: float | None = Field(None, gt=0)  # ask for this lease; None: the server's default
    sites: list[str] = Field(default_factory=list)  # sites announced at registration


class ProdMgrInterface(Component):
    name = "ProdMgrInterface"
    Settings = ProdMgrSettings
    tick_interval_s = 3.0

    def setup(self) -> None:
        self.tick_interval_s = self.settings.tick_s  # type: ignore[misc]
        pm = self.config.prodmanager
        token = pm.token or (pm.token_file.read_text().strip() if pm.token_file else None)
        self.client = ProdManagerClient(pm.url, token, retries=2, timeout=10.0)
        self.registered_capacity = 0
        self.agent = self.config.agent.name

    def teardown(self) -> None:
        self.client.close()

    # -- periodic work ----------------------------------------------------------------------

    def tick(self, ctx: Context) -> None:
        try:
            if not store.sites(ctx.conn, self.agent):
                return  # ResourceMonitor has not measured the batch system yet
            if self._capacity(ctx) != self.registered_capacity:
                self._register(ctx)
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
        held = store.allocations_in(ctx.conn, self.agent, HELD)
        if not held:
            return
        results = self.client.renew(self.agent, [(int(a.id), a.lease_token) for a in held])
        by_id = {str(r.allocation_id): r for r in results}
        for alloc in held:
            result = by_id.get(alloc.id)
            if result is None:
                continue
            if result.status == LeaseStatus.OK:
                store.set_allocation(ctx.conn, alloc.id, lease_expires_at=result.lease_expires or alloc.lease_expires_at)
                continue
            state = "recalled" if result.status == LeaseStatus.RECALLED else "lost"
            store.set_allocation(ctx.conn, alloc.id, state=state)
            live = [j.id for j in self._jobs_of(ctx, alloc.id) if j.state not in states.TERMINAL | states.DONE_OK]
            if live:
                ctx.publish("KillJobs", {"job_ids": live, "reason": f"allocation {alloc.id} {state} by ProdManager"})
            self.log.warning("allocation %s %s: %d job(s) to kill", alloc.id, state, len(live))

    def _jobs_of(self, ctx: Context, allocation_id: str) -> list[Any]:
        return list(ctx.conn.execute(sa.select(store.J).where(store.J.c.allocation_id == allocation_id)))

    def _finish(self, ctx: Context) -> None:
        for alloc in store.allocations_in(ctx.conn, self.agent, ["active"]):
            jobs = self._jobs_of(ctx, alloc.id)
            if not jobs:
                continue
            lease = (int(alloc.id), alloc.lease_token)
            if all(j.state in states.DONE_OK for j in jobs):
                files = self._output_files(ctx, [j.id for j in jobs])
                events = sum(int(j.events_done) for j in jobs)
                try:
                    self.client.complete(self.agent, lease, events, files)
                except pm_errors.LeaseLost:
                    self.log.warning("allocation %s: lease lost before completion; its work is refused", alloc.id)
                    store.set_allocation(ctx.conn, alloc.id, state="lost")
                    continue
                store.set_allocation(ctx.conn, alloc.id, state="done", events_reported=events)
            elif all(j.state in states.DONE_OK | {states.EXHAUSTED, states.KILLED} for j in jobs):
                failed = [j.name for j in jobs if j.state in (states.EXHAUSTED, states.KILLED)]
                with contextlib.suppress(pm_errors.LeaseLost):
                    self.client.release(self.agent, lease, failed=True, reason=f"jobs failed: {', '.join(failed)}"[:500])
                store.set_allocation(ctx.conn, alloc.id, state="failed")

    def _output_files(self, ctx: Context, job_ids: list[int]) -> list[OutputFile]:
        rows = ctx.conn.execute(
            sa.select(pa_file).where(pa_file.c.job_id.in_(job_ids), pa_file.c.kind == "unmerged")
        )
        return [OutputFile(lfn=r.lfn, size=r.size, checksum=f"adler32:{r.adler32}", events=r.events) for r in rows]

    def _acquire(self, ctx: Context) -> None:
        waiting = sum(
            n for (job_type, state), n in store.count_by_state(ctx.conn, self.agent).items()
            if state in states.LIVE and job_type == "production"
        )
        room = min(self.settings.max_acquire, self._capacity(ctx) - waiting)
        if room <= 0:
            return
        allocations = self.client.acquire(self.agent, jobs=room, lease_seconds=self.settings.lease_s)
        if not allocations:
            return
        fresh = [a for a in allocations if self._store(ctx, a)]
        if fresh:
            ctx.publish("AllocationAcquired", {"allocation_ids": [str(a.allocation_id) for a in fresh]})
            self.log.info("acquired %d allocation(s) (room for %d)", len(fresh), room)

    def _store(self, ctx: Context, a: Allocation) -> bool:
        """Record an allocation; False if it is already known under the same lease."""
        known = store.allocation(ctx.conn, str(a.allocation_id), lock=True)
        now = time.time()
        if known is not None:
            # Handed out again after our lease lapsed: the old attempt's jobs were killed.
            store.set_allocation(ctx.conn, known.id, lease_token=a.lease_token, lease_expires_at=a.lease_expires)
            return False
        ctx.conn.execute(store.pa_allocation.insert().values(
            id=str(a.allocation_id), agent=self.agent, request_id=str(a.request_id), request_name=a.request_name,
            lease_token=a.lease_token, lease_expires_at=a.lease_expires, workflow=json.dumps(a.spec),
            first_event=a.first_event, n_events=a.n_events, run=a.run_number, seed=a.seed, job_index=a.job_index,
            input_files=json.dumps([f.model_dump() for f in a.input_files]), state="acquired",
            acquired_at=now, updated_at=now,
        ))
        return True

    # -- merged files ------------------------------------------------------------------------

    @handles("MergeAccepted")
    def on_merge_accepted(self, ctx: Context, payload: dict[str, Any]) -> None:
        merged = ctx.conn.execute(sa.select(pa_file).where(pa_file.c.id == payload["file_id"])).first()
        if merged is None or merged.reported:
            return
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

