"""ProdMgrInterface: the agent's side of the pull protocol with ProdManager.

Each tick it renews the leases of the allocations it holds (an expired or recalled lease kills
their jobs: `killed` at once, their batch jobs removed by JobSubmitter), gives up allocations whose jobs could not be built (released as failed, with the
reason), completes allocations whose jobs are done (reporting events and files) or releases
them as failed when their jobs exhausted retries, acquires new work (only as much as the agent
can run soon: room per site minus jobs already waiting, counting the jobs of allocations not
yet cut into jobs, so it never hoards), copies the run
gates of requests merged per run (MergeSensor's `pa_run`), reports merged files, pushes
its jobs' state changes (with failed attempts' log tails) for the web monitor and, when it
changed, the automatic job sizing of its `per_job: auto` requests (for `prodrequest show`).

Read, then call, then record: no HTTP call runs inside a database transaction. Each step reads
what to do in one short transaction, calls ProdManager with none open, and records the outcome
in another (idempotently: a lock conflict re-runs only the recording). The tick therefore runs
outside the runner's transaction (`tick_in_transaction = False`); handlers only ask for a tick.

ProdManager unreachable is an ordinary condition: the tick stops at the first call that cannot
get through, waits (backoff doubling up to `outage_backoff_max_s`) and tries again; one warning
when the outage starts, one line when it ends. Everything else in the agent goes on.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from prodagent.jobs import allocations as allocs
from prodagent.jobs import drain, job_events, site_states, site_store, sizing_store, states, store
from prodagent.jobs.layout import Layout
from prodagent.runtime import daemon
from prodagent.runtime.component import Component, Context, handles
from prodmanager import errors as pm_errors
from prodmanager.client import ProdManagerClient, ServerUnavailable
from prodmanager.models import (
    Allocation,
    CompleteOutcome,
    ComponentState,
    LeaseStatus,
    MergedFile,
    OutputFile,
    RequestSizing,
)
from prodmanager.text import one_line

RENEW_CHUNK = 5000  # leases per renew call (ProdManager takes at most 10,000)
COMPLETE_PER_CALL = 100  # allocations per bulk completion call (ProdManager takes at most 500)
REASON_MAX = 500  # ProdManager's limit on a release reason
JOB_EVENTS_PER_CALL = 100  # job state changes per push (ProdManager takes at most 200)
SIZINGS_PER_CALL = 50  # requests' sizing per push (ProdManager takes at most 100)
JOB_SETTLE_S = 5.0
ENDED = states.DONE_OK | {states.EXHAUSTED, states.KILLED}


class ProdMgrSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tick_s: float = Field(3.0, gt=0)
    queue_factor: float = Field(1.0, ge=0)  # hold work for slots * (1 + factor) jobs
    max_acquire: int = Field(1000, ge=1)  # jobs per acquire call
    lease_s: float | None = Field(None, gt=0)  # ask for this lease; None: the server's default
    sites: list[str] = Field(default_factory=list)  # sites announced at registration
    complete_workers: int = Field(4, ge=1)  # bulk completion calls to ProdManager at once
    finish_budget_s: float = Field(10.0, gt=0)  # per tick: start no completion after this long
    renew_interval_s: float = Field(0.0, ge=0)  # renew held leases at most this often; 0: every tick
    http_timeout_s: float = Field(10.0, gt=0)  # per HTTP attempt
    http_retries: int = Field(2, ge=0)  # quick retries of one call before it counts as an outage
    outage_backoff_max_s: float = Field(30.0, gt=0)  # longest wait between tries while unreachable
    status_every_s: float = Field(15.0, gt=0)  # push the components' status this often


@dataclass
class Outage:
    """ProdManager unreachable since `since` (monotonic); next try not before `next_try`."""

    since: float | None = None
    next_try: float = 0.0
    backoff: float = 0.0


class ProdMgrInterface(Component):
    name = "ProdMgrInterface"
    Settings = ProdMgrSettings
    tick_in_transaction = False

    def setup(self) -> None:
        pm = self.config.prodmanager
        token = pm.token or (pm.token_file.read_text().strip() if pm.token_file else None)
        self.client = ProdManagerClient(pm.url, token, retries=self.settings.http_retries,
                                        timeout=self.settings.http_timeout_s)
        self.registered_capacity = 0
        self.agent = self.config.agent.name
        self.pool = ThreadPoolExecutor(self.settings.complete_workers, thread_name_prefix="complete")
        self.next_renew = 0.0
        self.outage = Outage()
        self.next_status = 0.0
        self.job_cursor: int | None = None  # last job transition ProdManager has (None: ask it)
        self.sizing_sent: dict[str, str] = {}  # request -> the sizing ProdManager has (or refused)
        self.layout = Layout(self.config)

    def teardown(self) -> None:
        self.pool.shutdown()
        self.client.close()

    # -- periodic work ----------------------------------------------------------------------

    def tick(self, _ctx: Context | None = None) -> None:
        if time.monotonic() < self.outage.next_try:
            return
        try:
            sites, capacity = self.transaction(self._sites)
            if not sites:
                return  # ResourceMonitor has not measured the batch system yet
            if capacity != self.registered_capacity:
                self._register(sites, capacity)
            self._renew()
            draining = self.transaction(lambda ctx: drain.draining(ctx.conn, self.agent))
            if draining:
                self._release_unstarted()
            self._give_up()
            self._finish()
            if not draining:
                self._acquire(capacity)
            self._refresh_run_gates()
            self._report_merged()
            self._push_jobs()
            self._push_sizing()
            self._push_status()
        except ServerUnavailable as exc:
            self._unreachable(exc)
        except pm_errors.ProdManagerError as exc:
            self._reachable()
            self.log.warning("ProdManager refused a call (%s); will retry: %s", exc.code, exc)
        else:
            self._reachable()

    @handles("ResourcesAvailable")
    def on_resources(self, ctx: Context, payload: dict[str, Any]) -> None:
        self.tick_now = True  # acquire from the tick: no HTTP call inside the handler's transaction

    @handles("MergeAccepted")
    def on_merge_accepted(self, ctx: Context, payload: dict[str, Any]) -> None:
        self.tick_now = True  # the tick reports every merged file not yet reported

    def _unreachable(self, exc: Exception) -> None:
        now = time.monotonic()
        outage = self.outage
        outage.backoff = min(max(outage.backoff * 2, self.settings.tick_s), self.settings.outage_backoff_max_s)
        outage.next_try = now + outage.backoff
        if outage.since is None:
            outage.since = now
            self.log.warning("ProdManager unreachable (%s); the agent goes on, retrying with backoff up to %.0f s",
                             exc, self.settings.outage_backoff_max_s)

    def _reachable(self) -> None:
        if self.outage.since is not None:
            self.log.warning("ProdManager reachable again after %.0f s", time.monotonic() - self.outage.since)
        self.outage = Outage()

    # -- registration -----------------------------------------------------------------------------

    def _sites(self, ctx: Context) -> tuple[list[str], int]:
        rows = store.sites(ctx.conn, self.agent)
        health = site_store.health(ctx.conn, self.agent)
        # A banned site's slots pull no work (its queue would only wait for it).
        slots = sum(s.slots for s in rows if s.site not in health or health[s.site].state != site_states.BANNED)
        return [s.site for s in rows], max(1, int(slots * (1 + self.settings.queue_factor)))

    def _register(self, sites: list[str], capacity: int) -> None:
        self.client.register_agent(self.agent, self.settings.sites or sites or ["local"], capacity)
        self.registered_capacity = capacity
        self.log.info("registered with ProdManager at %s, capacity %d", self.config.prodmanager.url, capacity)

    # -- leases -----------------------------------------------------------------------------------

    def _renew(self) -> None:
        if time.monotonic() < self.next_renew:
            return
        held = self.transaction(lambda ctx: allocs.allocations_in(ctx.conn, self.agent, allocs.HELD))
        if not held:
            return
        results = []
        for i in range(0, len(held), RENEW_CHUNK):
            chunk = held[i:i + RENEW_CHUNK]
            results += self.client.renew(self.agent, [(int(a.pm_id), a.lease_token) for a in chunk])
        self.next_renew = time.monotonic() + self.settings.renew_interval_s
        renewed: dict[str, float] = {}
        ended: list[tuple[Any, str]] = []
        for alloc, result in zip(held, results, strict=True):  # ProdManager answers in the order asked
            if result.status == LeaseStatus.OK:
                renewed[alloc.id] = result.lease_expires or alloc.lease_expires_at
            elif result.status == LeaseStatus.FINISHED:
                # ProdManager recorded our final call but its answer was lost: the call is
                # repeated (completion or release) and answered as the first was.
                continue
            else:
                ended.append((alloc, allocs.RECALLED if result.status == LeaseStatus.RECALLED else allocs.LOST))
        self.transaction(lambda ctx: self._record_renewal(ctx, renewed, ended))

    def _record_renewal(self, ctx: Context, renewed: dict[str, float], ended: list[tuple[Any, str]]) -> None:
        allocs.set_leases(ctx.conn, renewed)
        for alloc, state in ended:
            why = f"allocation {alloc.pm_id} (lease {alloc.lease_epoch}) {state} by ProdManager"
            if not allocs.move(ctx.conn, [alloc.id], state, reason=why):
                continue
            self._kill_jobs(ctx, alloc.id, why)

    def _kill_jobs(self, ctx: Context, allocation_id: str, why: str) -> None:
        """Kill the allocation's live jobs in this transaction (JobSubmitter removes their batch
        jobs); `KillJobs` only wakes it, so a lost one delays the removal, never loses it."""
        live = [j.id for j in allocs.jobs_of(ctx.conn, allocation_id) if j.state in store.KILLABLE]
        killed = store.kill_jobs(ctx.conn, live, why).ids
        if killed:
            ctx.publish("KillJobs", {"job_ids": killed, "reason": why})
        self.log.warning("%s: %d job(s) killed", why, len(killed))

    # -- giving up, completing, releasing ------------------------------------------------------------

    def _give_up(self) -> None:
        """Release as failed the allocations whose jobs could not be built, with the reason."""
        todo = self.transaction(lambda ctx: allocs.allocations_in(ctx.conn, self.agent, allocs.TO_GIVE_UP))
        for alloc in todo:
            reason = _reason(alloc.reason or f"allocation {alloc.state}")
            state = self._release_failed(alloc, reason)
            self.transaction(lambda ctx, a=alloc, s=state: allocs.move(ctx.conn, [a.id], s))
            self.log.warning("allocation %s given up (%s): %s", alloc.pm_id, state, reason)

    def _release_unstarted(self) -> None:
        """Draining: kill the jobs of allocations not started yet and give those back unfailed,
        so another agent gets them at once (ProdManager offers them again)."""
        def kill(ctx: Context) -> list[Any]:
            todo = drain.unstarted_allocations(ctx.conn, self.agent)
            for alloc in todo:
                self._kill_jobs(ctx, alloc.id, f"agent draining: allocation {alloc.pm_id} given back")
            return todo

        todo = self.transaction(kill)
        for alloc in todo:
            try:
                self.client.release(self.agent, (int(alloc.pm_id), alloc.lease_token), failed=False,
                                    reason="agent draining")
                state = allocs.RELEASED
            except pm_errors.LeaseLost as exc:
                state = allocs.RECALLED if exc.details.get("status") == "recalled" else allocs.LOST
            self.transaction(lambda ctx, a=alloc, s=state: allocs.move(ctx.conn, [a.id], s, reason="agent draining"))
        if todo:
            self.log.warning("draining: %d allocation(s) not started given back to ProdManager", len(todo))

    def _release_failed(self, alloc: Any, reason: str) -> str:
        """Release to ProdManager as failed; the state to record (failed, or lost/recalled)."""
        try:
            self.client.release(self.agent, (int(alloc.pm_id), alloc.lease_token), failed=True, reason=reason)
        except pm_errors.LeaseLost as exc:
            return allocs.RECALLED if exc.details.get("status") == "recalled" else allocs.LOST
        return allocs.FAILED

    def _finish(self) -> None:
        """Complete allocations whose jobs all succeeded, release those whose jobs all ended.

        One grouped query finds them; completions go to ProdManager in bulk calls,
        `complete_workers` at a time, and none starts after `finish_budget_s`, so acquiring is
        never starved.
        """
        to_complete, to_fail = self.transaction(self._finish_plan)
        for alloc, reason in to_fail:
            state = self._release_failed(alloc, reason)
            self.transaction(lambda ctx, a=alloc, s=state, r=reason: allocs.move(ctx.conn, [a.id], s, reason=r))
        deadline = time.monotonic() + self.settings.finish_budget_s
        chunk = COMPLETE_PER_CALL * self.settings.complete_workers
        for i in range(0, len(to_complete), chunk):
            if time.monotonic() > deadline:
                return  # the rest next tick
            self._complete_chunk(to_complete[i:i + chunk], deadline)

    def _finish_plan(self, ctx: Context) -> tuple[list[tuple[Any, int]], list[tuple[Any, str]]]:
        active = {a.id: a for a in allocs.allocations_in(ctx.conn, self.agent, [allocs.ACTIVE])}
        if not active:
            return [], []
        to_complete: list[tuple[Any, int]] = []
        to_fail: list[tuple[Any, str]] = []
        for alloc_id, total, ok, ended, events in allocs.job_summary(ctx.conn, self.agent, states.DONE_OK, ENDED):
            alloc = active.get(alloc_id)
            if alloc is None:
                continue  # became active since the first query: next tick
            if ok == total:
                to_complete.append((alloc, int(events or 0)))
            elif ended == total:
                failed = [j.name for j in allocs.jobs_of(ctx.conn, alloc.id)
                          if j.state in (states.EXHAUSTED, states.KILLED)]
                to_fail.append((alloc, _reason(f"jobs failed: {', '.join(failed)}")))
        to_complete.sort(key=lambda pair: pair[0].acquired_at)
        return to_complete, to_fail

    def _complete_chunk(self, todo: list[tuple[Any, int]], deadline: float) -> None:
        """Complete with ProdManager, `COMPLETE_PER_CALL` allocations per call, calls in parallel."""
        files = self.transaction(lambda ctx: self._output_files(ctx, [alloc.id for alloc, _events in todo]))
        calls = [todo[i:i + COMPLETE_PER_CALL] for i in range(0, len(todo), COMPLETE_PER_CALL)]

        def complete(call: list[tuple[Any, int]]) -> list[CompleteOutcome] | Exception | None:
            if time.monotonic() > deadline:
                return None  # next tick
            try:
                return self.client.complete_many(self.agent, [
                    ((int(alloc.pm_id), alloc.lease_token), events, files.get(alloc.id, []))
                    for alloc, events in call
                ])
            except (pm_errors.ProdManagerError, OSError) as exc:
                return exc

        done: dict[int, list[str]] = defaultdict(list)  # events -> allocations
        ended: list[tuple[Any, str]] = []
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
                    self.log.warning("allocation %s: lease lost before completion; its work is void", alloc.pm_id)
                    ended.append((alloc, allocs.RECALLED if outcome.status == "recalled" else allocs.LOST))
                else:  # kept active: tried again next tick, the others are not held back
                    self.log.error("allocation %s: ProdManager refused its completion (%s): %s",
                                   alloc.pm_id, outcome.error, outcome.detail)

        def record(ctx: Context) -> None:
            for events, ids in done.items():
                allocs.move(ctx.conn, ids, allocs.DONE, events_reported=events)
            self._record_renewal(ctx, {}, ended)

        self.transaction(record)
        if error is not None:
            raise error  # the tick logs it (or waits out the outage) and tries again

    def _output_files(self, ctx: Context, allocation_ids: list[str]) -> dict[str, list[OutputFile]]:
        """The unmerged files of these allocations' jobs, per allocation."""
        out: dict[str, list[OutputFile]] = defaultdict(list)
        for r in allocs.unmerged_outputs(ctx.conn, allocation_ids):
            out[r.allocation_id].append(
                OutputFile(lfn=r.lfn, size=r.size, checksum=f"adler32:{r.adler32}", events=r.events)
            )
        return out

    # -- acquiring --------------------------------------------------------------------------------

    def _acquire(self, capacity: int) -> None:
        # Waiting: live jobs and the jobs of allocations not cut yet (an allocation may hold several).
        waiting = self.transaction(lambda ctx: allocs.jobs_waiting(ctx.conn, self.agent))
        room = min(self.settings.max_acquire, capacity - waiting)
        if room <= 0:
            return
        allocations = self.client.acquire(self.agent, jobs=room, lease_seconds=self.settings.lease_s)
        if not allocations:
            return
        # Leased already: recorded (and announced) in one transaction right after the call. If
        # recording fails for good, the leases lapse on ProdManager and the work goes out again.
        fresh = self.transaction(lambda ctx: self._record_acquired(ctx, allocations))
        if fresh:
            self.log.info("acquired %d allocation(s), %d job(s) (room for %d)", len(fresh),
                          sum(a.n_jobs for a in allocations if allocs.key(a.allocation_id, a.lease_epoch) in fresh), room)

    def _record_acquired(self, ctx: Context, allocations: list[Allocation]) -> list[str]:
        """Record each lease as a row of its own; announce the new ones. Idempotent."""
        keys = {allocs.key(a.allocation_id, a.lease_epoch): a for a in allocations}
        known = allocs.known_leases(ctx.conn, list(keys))
        foreign = sorted(k for k, agent in known.items() if agent != self.agent)
        if foreign:
            self.log.error("leases %s are recorded for another agent on this database; not taken",
                           ", ".join(foreign[:5]))
        now = time.time()
        workflows: dict[int, str] = {}
        rows: list[dict[str, Any]] = []
        for k, a in keys.items():
            if k in known:
                continue
            if a.request_id not in workflows:
                workflows[a.request_id] = _json(a.spec)
            rows.append({
                "id": k, "pm_id": a.allocation_id, "lease_epoch": a.lease_epoch, "agent": self.agent,
                "request_id": str(a.request_id), "request_name": a.request_name, "lease_token": a.lease_token,
                "lease_expires_at": a.lease_expires, "workflow": workflows[a.request_id],
                "first_event": a.first_event, "n_events": a.n_events, "n_jobs": a.n_jobs, "run": a.run_number,
                "seed": a.seed,
                "job_index": a.job_index, "input_files": _json([f.model_dump() for f in a.input_files]),
                "state": allocs.ACQUIRED, "acquired_at": now, "updated_at": now,
            })
        allocs.insert(ctx.conn, rows)
        fresh = [r["id"] for r in rows]
        if fresh:
            ctx.publish("AllocationAcquired", {"allocation_ids": fresh})
        return fresh

    # -- merged files -----------------------------------------------------------------------------

    def _refresh_run_gates(self) -> None:
        """Copy ProdManager's run states of requests merged per run that have files waiting."""
        for request_id in self.transaction(lambda ctx: store.run_gated_requests(ctx.conn, self.agent)):
            found = {r.run: r.state for r in self.client.runs(int(request_id))}
            self.transaction(lambda ctx, r=request_id, f=found: store.record_runs(ctx.conn, self.agent, r, f))

    def _report_merged(self) -> None:
        """Report merged files not yet reported; a refusal is recorded as one, not as success."""
        todo = self.transaction(self._merged_to_report)
        for merged, request_id, inputs, parents in todo:
            refused: str | None = None
            try:
                self.client.report_merged(self.agent, int(request_id), [MergedFile(
                    lfn=merged.lfn, size=merged.size, checksum=f"adler32:{merged.adler32}", events=merged.events,
                    inputs=inputs, pfn=merged.pfn, parents=parents,
                )])
            except (pm_errors.Conflict, pm_errors.InvalidInput, pm_errors.NotFound, pm_errors.Forbidden) as exc:
                # A duplicate is acknowledged (files_duplicate), never refused: this is a refusal.
                refused = f"{exc.code}: {exc}"[:2000]
                self.log.error("merged file %s refused by ProdManager: %s", merged.lfn, refused)
            self.transaction(lambda ctx, f=merged.id, r=refused: allocs.record_merged_report(ctx.conn, f, r))

    def _push_jobs(self) -> None:
        """Send job state changes (with failed attempts' log tails) for the web monitor, and
        resubmit the paused jobs ProdManager's answer names. The
        cursor passes a change only once it is `JOB_SETTLE_S` old: on MariaDB a transaction
        may commit a lower transition id after a higher one was read; resending is harmless."""
        if self.job_cursor is None:
            self.job_cursor = self.client.report_jobs(self.agent, []).last_seq
        cursor = self.job_cursor
        rows = self.transaction(
            lambda ctx: store.transitions_since(ctx.conn, self.agent, cursor, JOB_EVENTS_PER_CALL)
        )
        ack = self.client.report_jobs(self.agent, [job_events.to_event(r, self.layout) for r in rows])
        if ack.resubmit:
            self.transaction(lambda ctx: self._resubmit(ctx, ack.resubmit))
        settled = time.time() - JOB_SETTLE_S
        for row in rows:
            if row.at > settled:
                break
            self.job_cursor = int(row.id)

    def _resubmit(self, ctx: Context, pm_ids: list[int]) -> None:
        """An operator or the owner asked ProdManager to resubmit these allocations' paused
        jobs: as `prodagent jobs resubmit` does. Asked again until the job moves on, so a lost
        message only delays it; JobCreator ignores jobs no longer waiting."""
        ids = store.waiting_jobs_of(ctx.conn, self.agent, pm_ids)
        if ids:
            ctx.publish("RetryJob", {"job_ids": ids, "reason": "resubmitted by an operator (ProdManager)"})
            self.log.info("resubmitting job(s) %s as asked through ProdManager", ids)

    def _push_sizing(self) -> None:
        """Send each `per_job: auto` request's sizing that changed since it was last sent (the
        estimate is recomputed every tick; only a different one goes out). A refused push is
        sent again one request per call, so one refusal holds back no other request; a refused
        request is logged and not sent again until its sizing changes."""
        rows = self.transaction(lambda ctx: sizing_store.all_of(ctx.conn, self.agent))
        todo: list[tuple[str, str, RequestSizing]] = []
        for row in rows:
            item = _sizing(row)
            key = item.model_dump_json(exclude={"computed_at"})
            if self.sizing_sent.get(row.request_id) != key:
                todo.append((row.request_id, key, item))
        for i in range(0, len(todo), SIZINGS_PER_CALL):
            chunk = todo[i:i + SIZINGS_PER_CALL]
            try:
                self.client.report_sizing(self.agent, [item for _, _, item in chunk])
            except (pm_errors.Forbidden, pm_errors.InvalidInput, pm_errors.NotFound) as exc:
                if len(chunk) > 1:
                    for one in chunk:
                        self._push_one_sizing(*one)
                    continue
                self.log.error("sizing of request %s refused by ProdManager (%s): %s", chunk[0][0], exc.code, exc)
            self.sizing_sent.update((request_id, key) for request_id, key, _ in chunk)

    def _push_one_sizing(self, request_id: str, key: str, item: RequestSizing) -> None:
        try:
            self.client.report_sizing(self.agent, [item])
        except (pm_errors.Forbidden, pm_errors.InvalidInput, pm_errors.NotFound) as exc:
            self.log.error("sizing of request %s refused by ProdManager (%s): %s", request_id, exc.code, exc)
        self.sizing_sent[request_id] = key

    def _push_status(self) -> None:
        """Every `status_every_s`: the components' status (as `prodAgentd status` shows it)."""
        if time.monotonic() < self.next_status:
            return
        rows = daemon.status(self.config, list(self.config.components.enabled))
        self.client.report_status(self.agent, [
            ComponentState(name=r.component, alive=r.alive, state=r.state,
                           heartbeat_age_s=r.heartbeat_age_s, pending=r.pending,
                           dead_letters=r.dead_letters, restarts=r.restarts)
            for r in rows
        ])
        self.next_status = time.monotonic() + self.settings.status_every_s

    def _merged_to_report(self, ctx: Context) -> list[tuple[Any, str, list[str], list[str]]]:
        """(merged file, request, its unmerged inputs, the files of other tasks they came from)."""
        files = allocs.unreported_merged(ctx.conn, self.agent)
        parents = store.lineage(ctx.conn, [f.id for f in files])
        return [(f, f.request_id, allocs.merge_input_lfns(ctx.conn, f.job_id), parents[f.id]) for f in files]


def _reason(text: str) -> str:
    """A reason ProdManager takes: one line, valid text (the door's own rule), at most REASON_MAX."""
    return one_line(text, REASON_MAX) or "failed"


def _sizing(row: Any) -> RequestSizing:
    """A `pa_sizing` row as ProdManager takes it (the formula as the agent declares it); built
    unchecked: ProdManager checks it, and a refusal is logged rather than stopping the tick."""
    return RequestSizing.model_construct(
        request_id=int(row.request_id), state=row.state, events_per_job=row.events_per_job,
        memory_mb=row.memory_mb, time_s=row.time_s, figures=json.loads(row.figures), formula=row.formula,
        reason=_reason(row.reason) if row.reason else None, computed_at=row.updated_at,
    )


def _json(value: Any) -> str:
    return json.dumps(value)
