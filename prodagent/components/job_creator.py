"""JobCreator: turns allocations into jobs, and jobs back from cool-off into new attempts.

An allocation (an event range of a request) becomes jobs of `events.per_job` events, each with
a seed unique within the request and reproducible (the allocation's seed plus the job's offset),
a job spec and a work area. An allocation of a processing request (a group of input files)
becomes one job over its files, numbered with their run when they share one. Many jobs per message; handlers are idempotent: an allocation that
already has jobs, or a job no longer in cool-off, is left as it is.

With `events.per_job: auto` (prodagent.jobs.sizing) an allocation is cut in steps: scouts
first, the rest once the scouts have reported, to the estimate of the moment; it stays
`acquired` until all of it is cut. The tick (every `tick_s`) judges the scouts, refreshes the
estimates from finished jobs and cuts what was waiting for them.

A poison allocation fails alone: one whose workflow the models refuse, or whose rows or specs
cannot be built or written, becomes `unrunnable` with a `reason` naming what is wrong (for
ProdMgrInterface to release as failed), and the rest of its batch gets its jobs. Faults of the
agent's own environment (database unreachable, disk full) are nobody's poison: they roll the
batch back, and the message is handled again.
"""

from __future__ import annotations

import errno
import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from prodagent.components.error_handler import ErrorHandlerSettings, cooloffs_over
from prodagent.jobs import sizing, sizing_store, states, store
from prodagent.jobs.allocations import ACQUIRED, ACTIVE, UNRUNNABLE
from prodagent.jobs.layout import Layout
from prodagent.jobs.specs import (
    MAX_REASON_CHARS,
    Workflow,
    WorkflowUnrunnable,
    attempt_spec,
    describe,
    parse_workflow,
    production_attempt,
    write_production,
)
from prodagent.payload.jobspec import JobSpec
from prodagent.runtime.component import Component, Context, handles
from prodmanager.text import one_line
from prodrequest.spec import MonteCarloWorkflow, ProcessingWorkflow

#: OSErrors of the agent's disk, not of an allocation: the batch is retried, nobody given up
_ENVIRONMENT_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO, errno.EMFILE, errno.ENFILE})


@dataclass(frozen=True)
class _Plan:
    """One allocation's jobs, built in memory: rows to insert and the specs to write."""

    alloc: Any
    workflow: Workflow
    rows: list[dict[str, Any]]
    specs: list[tuple[Path, JobSpec]]
    complete: bool = True  # all of the allocation is cut (per_job auto may cut it in steps)
    scouting: dict[str, Any] | None = None  # per_job auto: the request's scouting starts with these


class JobCreatorSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # Job specs written at once: each is fsync'ed, and the waits overlap instead of adding up.
    write_workers: int = Field(8, ge=1)
    reconcile_s: float = Field(60.0, gt=0)  # allocations and cool-offs left waiting this long: acted on
    tick_s: float = Field(5.0, gt=0)  # per_job auto: judge scouts, refresh estimates, cut waiting work


class JobCreator(Component):
    name = "JobCreator"
    Settings = JobCreatorSettings

    def setup(self) -> None:
        self.layout = Layout(self.config)
        self.pool = ThreadPoolExecutor(self.settings.write_workers, thread_name_prefix="spec")

    def teardown(self) -> None:
        self.pool.shutdown()

    @handles("AllocationAcquired")
    def on_allocation(self, ctx: Context, payload: dict[str, Any]) -> None:
        created = self._create_for(ctx, [str(a) for a in payload["allocation_ids"]])
        if created:
            ctx.publish("JobCreated", {"job_ids": created})
            self.log.info("created %d job(s) for %d allocation(s)", len(created), len(payload["allocation_ids"]))

    def reconcile(self, ctx: Context) -> None:
        """Allocations still `acquired`, and cool-offs over, for longer than `reconcile_s`, with
        no message of theirs still queued (late behind a long queue is not lost): their
        `AllocationAcquired` or `RetryJob` was lost. The handlers do the work (idempotent, under lock)."""
        agent, before = self.config.agent.name, time.time() - self.settings.reconcile_s
        queued = {str(a) for p in self.service.queued(ctx.conn, self.name, "AllocationAcquired")
                  for a in p["allocation_ids"]}
        retrying = {int(j) for p in self.service.queued(ctx.conn, self.name, "RetryJob") for j in p["job_ids"]}
        waiting = [a.id for a in store.allocations_in(ctx.conn, agent, [ACQUIRED])
                   if a.acquired_at < before and a.id not in queued]
        if waiting:
            self.log.warning("%d allocation(s) acquired but without jobs (AllocationAcquired lost?): creating",
                             len(waiting))
            self.on_allocation(ctx, {"allocation_ids": waiting})
        policy = self.config.component_settings("ErrorHandler", ErrorHandlerSettings)
        due = [j for j in cooloffs_over(ctx.conn, agent, policy, before) if j not in retrying]
        if due:
            self.log.warning("%d job(s) past their cool-off (RetryJob lost?): retrying", len(due))
            self.on_retry(ctx, {"job_ids": due, "reason": "retry after cool-off (reconciled)"})

    def _create_for(self, ctx: Context, allocation_ids: list[str]) -> list[int]:
        """Jobs of every allocation still `acquired`: built in memory one allocation at a time,
        then recorded in bulk (one insert, one update). If recording the batch fails, each
        allocation is recorded alone in its own savepoint, so only the one at fault is given up."""
        locked = {a.id: a for a in store.allocations(ctx.conn, allocation_ids, lock=True)}
        plans: list[_Plan] = []
        scouting: set[str] = set()  # per_job auto: requests whose scouts this batch makes
        for allocation_id in dict.fromkeys(allocation_ids):
            alloc = locked.get(allocation_id)
            if alloc is None or alloc.state != ACQUIRED:
                continue
            try:
                plan = self._plan(ctx.conn, alloc, scouting)
            except Exception as exc:
                self._give_up(ctx, alloc, exc)
                continue
            if plan.rows or plan.complete:
                plans.append(plan)
        if not plans:
            return []
        try:
            with ctx.conn.begin_nested():
                return self._record(ctx, plans)
        except Exception as exc:
            if len(plans) == 1:
                self._give_up(ctx, plans[0].alloc, exc)
                return []
            if _environment_fault(exc):
                raise
            self.log.warning("recording %d allocations at once failed (%s); each alone now", len(plans), exc)
        created: list[int] = []
        for plan in plans:
            try:
                with ctx.conn.begin_nested():
                    created += self._record(ctx, [plan])
            except Exception as exc:
                self._give_up(ctx, plan.alloc, exc)
        return created

    def _plan(self, conn: sa.Connection, alloc: Any, scouting_now: set[str]) -> _Plan:
        """The allocation's job rows and specs, validated, nothing written."""
        workflow = parse_workflow(alloc.workflow)  # once per workflow text (cached)
        if isinstance(workflow, ProcessingWorkflow):
            inputs = _input_files(alloc)
            rows = [self._processing_row(alloc, workflow, inputs)]
            specs = [production_attempt(self.layout, SimpleNamespace(**row), workflow, inputs) for row in rows]
            return _Plan(alloc, workflow, rows, specs)
        complete, scouting = True, None
        if workflow.events.auto and alloc.request_id in scouting_now:
            rows, complete = [], False  # another allocation of this batch makes the scouts
        elif workflow.events.auto:
            rows, complete, scouting = self._auto_rows(conn, alloc, workflow)
            if scouting is not None:
                scouting_now.add(alloc.request_id)
        else:
            rows = self._rows(alloc, workflow)
        specs = [production_attempt(self.layout, SimpleNamespace(**row), workflow) for row in rows]
        return _Plan(alloc, workflow, rows, specs, complete, scouting)

    def _record(self, ctx: Context, plans: list[_Plan]) -> list[int]:
        """Insert the plans' jobs, then write their specs (after the rows: a job row never
        commits without its spec; a rolled-back batch leaves only files rewritten identically)."""
        datasets: dict[str, int] = {}
        rows: list[dict[str, Any]] = []
        reasons: list[str] = []
        for plan in plans:
            output = plan.workflow.output
            for kept in [output, *(o for _, o in plan.workflow.kept_steps())]:  # kept steps: own datasets
                if kept.dataset not in datasets:
                    datasets[kept.dataset] = store.ensure_dataset(
                        ctx.conn, self.config.agent.name, kept.dataset, kept.tier, plan.alloc.request_id,
                        plan.workflow.merge.model_dump(mode="json"),
                    )
            rows += [{**row, "dataset_id": datasets[output.dataset]} for row in plan.rows]
            reasons += [f"allocation {plan.alloc.id}" + (" (scout)" if row.get("scout") else "")
                        for row in plan.rows]
            if plan.scouting is not None and not sizing_store.start(
                    ctx.conn, self.config.agent.name, plan.alloc.request_id, sizing.SCOUTING, plan.scouting,
                    sizing.FORMULA):
                raise RuntimeError(f"request {plan.alloc.request_id}: scouting started twice")
        ids = store.insert_jobs(ctx.conn, rows, reason=reasons) if rows else []
        self._write_specs([attempt_spec for plan in plans for attempt_spec in plan.specs])
        store.set_allocations(ctx.conn, [plan.alloc.id for plan in plans if plan.complete], state=ACTIVE)
        return ids

    def _write_specs(self, specs: list[tuple[Path, JobSpec]]) -> None:
        """Write attempts' specs in the pool: each is fsync'ed, and the waits overlap."""
        list(self.pool.map(lambda attempt_spec: write_production(*attempt_spec), specs))

    def _give_up(self, ctx: Context, alloc: Any, exc: Exception) -> None:
        """Mark a poison allocation `unrunnable` with why; re-raise what is not its fault."""
        if _environment_fault(exc):
            raise exc
        reason = unrunnable_reason(exc)
        store.set_allocation(ctx.conn, alloc.id, state=UNRUNNABLE, reason=reason)
        self.log.error("allocation %s of request %s is unrunnable: %s", alloc.id, alloc.request_id, reason)

    def _rows(self, alloc: Any, workflow: MonteCarloWorkflow) -> list[dict[str, Any]]:
        """The job rows of one Monte Carlo allocation (without their dataset)."""
        per_job = workflow.events.job_events
        end = alloc.first_event + alloc.n_events
        return [self._row(alloc, workflow, k, first, min(per_job, end - first), k)
                for k, first in enumerate(range(alloc.first_event, end, per_job))]

    def _processing_row(self, alloc: Any, workflow: Workflow, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        """The one job of a processing allocation: its files' run when they share one."""
        if not inputs:
            raise ValueError("a processing allocation without input files")
        runs = {f.get("run") for f in inputs}
        run = runs.pop() if len(runs) == 1 and None not in runs else alloc.run
        return self._row(alloc, workflow, 0, 0, int(alloc.n_events), 0, run=int(run))

    def _row(self, alloc: Any, workflow: Workflow, k: int, first: int, n_events: int, offset: int,
             run: int | None = None, memory_mb: int | None = None, time_s: int | None = None,
             scout: bool = False) -> dict[str, Any]:
        """Job `k` of an allocation; `offset` makes its seed and index unique in the request;
        `run`: the run of its input files (default: the allocation's)."""
        name = f"{self.config.agent.name}-r{alloc.request_id}-a{alloc.id}-{k}"
        return {
            "agent": self.config.agent.name, "name": name, "job_type": "production",
            "allocation_id": alloc.id, "request_id": alloc.request_id,
            "retry": 0, "max_retries": workflow.retry.max_retries,
            "first_event": first, "n_events": n_events,
            "seed": alloc.seed + offset, "run": alloc.run if run is None else run, "job_index": payload_index(alloc, offset),
            "memory_mb": memory_mb or workflow.resources.memory_mb, "time_s": time_s or workflow.resources.time_s,
            "workdir": str(self.layout.job_dir(alloc.request_id, name)), "scout": scout,
        }

    def _auto_rows(self, conn: sa.Connection, alloc: Any, workflow: MonteCarloWorkflow
                   ) -> tuple[list[dict[str, Any]], bool, dict[str, Any] | None]:
        """per_job auto: (rows, all cut, scouting figures): scouts for a request not yet scouted
        here, the rest to the estimate once sized, nothing while scouting or paused."""
        end = alloc.first_event + alloc.n_events
        cut_end, k = sizing_store.cut_so_far(conn, alloc.id)
        start = cut_end if cut_end is not None else alloc.first_event
        estimate = sizing_store.get(conn, self.config.agent.name, alloc.request_id)
        if estimate is None:
            size = sizing.scout_events(workflow.events.guessed_events_per_job)
            firsts = list(range(start, end, size))[:workflow.events.scouts]
            rows = [self._row(alloc, workflow, k + i, first, min(size, end - first), first - alloc.first_event,
                              scout=True) for i, first in enumerate(firsts)]
            cut_to = rows[-1]["first_event"] + rows[-1]["n_events"] if rows else start
            return rows, cut_to >= end, {"scouts": len(rows), "scout_events": size,
                                         "guessed_events_per_job": workflow.events.guessed_events_per_job}
        if estimate.state != sizing.SIZED:
            return [], False, None
        rows = [self._row(alloc, workflow, k + i, first, n, first - alloc.first_event,
                          memory_mb=estimate.memory_mb, time_s=estimate.time_s)
                for i, (first, n) in enumerate(sizing.even_cut(start, end, int(estimate.events_per_job)))]
        return rows, True, None

    def tick(self, ctx: Context) -> None:
        """per_job auto: judge finished scouts, refresh estimates, cut allocations waiting for them."""
        agent = self.config.agent.name
        ready: list[str] = []
        for row in sizing_store.in_states(ctx.conn, agent, [sizing.SCOUTING, sizing.SIZED]):
            workflow = store.workflow_for_request(ctx.conn, row.request_id)
            if workflow is None:
                continue
            events = parse_workflow(workflow).events
            state, reason = sizing.SIZED, None
            if row.state == sizing.SCOUTING:
                state, reason = sizing.scout_verdict(sizing_store.scouts(ctx.conn, agent, row.request_id))
            if state == sizing.PAUSED:
                sizing_store.update(ctx.conn, agent, row.request_id, state=state, reason=reason)
                self.log.error("request %s: %s", row.request_id, reason)
                continue
            if state != sizing.SIZED:
                continue
            assert events.target_job_s is not None
            found = sizing.estimate(sizing_store.finished_usage(ctx.conn, agent, row.request_id, states.DONE_OK),
                                    events.target_job_s, events.allocation_events)
            if found is None:
                continue
            figures = {**json.loads(row.figures), **found.figures}
            sizing_store.update(ctx.conn, agent, row.request_id, figures, state=state,
                                events_per_job=found.events_per_job, memory_mb=found.memory_mb, time_s=found.time_s)
            if row.state == sizing.SCOUTING:
                self.log.info("request %s sized from its scouts: %s", row.request_id, found.figures)
            ready += sizing_store.waiting_allocations(ctx.conn, agent, row.request_id)
        if ready:
            self.on_allocation(ctx, {"allocation_ids": ready})

    @handles("RetryJob")
    def on_retry(self, ctx: Context, payload: dict[str, Any]) -> None:
        """Jobs whose cool-off is over (or that an operator resubmitted): prepare their next attempt.

        In bulk (one transition, the specs written in parallel); if that fails, each job in a
        savepoint of its own: one whose next attempt cannot be built fails alone (from cool-off
        it is paused for an operator, with why), the others go on."""
        jobs = [j for j in store.jobs(ctx.conn, payload["job_ids"]) if j.state in states.allowed_from(states.CREATED)]
        if not jobs:
            return
        reason = payload.get("reason", "retry")
        ready: list[int] = []
        try:
            with ctx.conn.begin_nested():
                ready = self._next_attempts(ctx, jobs, reason)
        except Exception as exc:
            if _environment_fault(exc):
                raise
            for job in jobs:
                try:
                    with ctx.conn.begin_nested():
                        ready += self._next_attempts(ctx, [job], reason)
                except Exception as exc:
                    if _environment_fault(exc):
                        raise
                    self._hold(ctx, job, exc)
        if ready:
            ctx.publish("JobCreated", {"job_ids": ready})

    def _next_attempts(self, ctx: Context, jobs: list[Any], reason: str) -> list[int]:
        moved = store.transition(ctx.conn, [j.id for j in jobs], states.CREATED, reason,
                                 per_job={j.id: {"retry": j.retry + 1} for j in jobs})
        if not moved.ids:
            return []
        fresh = store.jobs(ctx.conn, moved.ids)
        workflows: dict[str, Any] = {}
        specs = []
        for job in fresh:
            if job.request_id not in workflows:
                workflows[job.request_id] = store.workflow_for_request(ctx.conn, job.request_id)
            if workflows[job.request_id] is None:
                raise LookupError(f"no workflow for request {job.request_id}")
            specs.append(attempt_spec(ctx.conn, self.layout, job, workflows[job.request_id]))
        self._write_specs(specs)
        return [j.id for j in fresh]

    def _hold(self, ctx: Context, job: Any, exc: Exception) -> None:
        """A job whose next attempt cannot be built: paused from cool-off (so no reconciliation
        retries it for ever); an operator's resubmission of a paused or exhausted job stays put."""
        why = one_line(f"next attempt cannot be built: {type(exc).__name__}: {exc}", MAX_REASON_CHARS)
        moved = store.transition(ctx.conn, [job.id], states.PAUSED, why) if job.state == states.COOLOFF else None
        self.log.error("job %s: %s%s", job.id, why, "; paused" if moved and moved.ids else "")


def unrunnable_reason(exc: Exception) -> str:
    """Why an allocation is unrunnable, one line: `invalid workflow: <path>: <message>; ...`,
    `job spec refused: <path>: <message>; ...`, or `job building failed: <error>: <message>`."""
    if isinstance(exc, WorkflowUnrunnable):
        return one_line(str(exc), MAX_REASON_CHARS)
    if isinstance(exc, ValidationError):
        return f"job spec refused: {describe(exc)}"
    detail = getattr(exc, "orig", None) or exc  # a database error: the driver's message, not the SQL
    return one_line(f"job building failed: {type(exc).__name__}: {detail}", MAX_REASON_CHARS)


def _environment_fault(exc: BaseException) -> bool:
    """A fault of the agent's database or disk, not of the allocation being built."""
    if isinstance(exc, sa.exc.OperationalError | sa.exc.InterfaceError | sa.exc.InternalError):
        return True
    return isinstance(exc, OSError) and exc.errno in _ENVIRONMENT_ERRNOS


def _input_files(alloc: Any) -> list[dict[str, Any]]:
    text = alloc.input_files
    return list(json.loads(text) if isinstance(text, str) else text or [])


def payload_index(alloc: Any, k: int) -> int:
    """The job's index in its request: the allocation's own index when it holds one job."""
    return int(getattr(alloc, "job_index", 0) or 0) + k
