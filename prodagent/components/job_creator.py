"""JobCreator: turns allocations into jobs, and jobs back from cool-off into new attempts.

An allocation (an event range of a request) becomes jobs of `events.per_job` events, each with
a seed unique within the request and reproducible (the allocation's seed plus the job's offset),
a job spec and a work area. An allocation of a processing request (a group of input files)
becomes one job over its files, numbered with their run when they share one. Many jobs per message; handlers are idempotent: an allocation that
already has jobs, or a job no longer in cool-off, is left as it is.

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
from prodagent.jobs import states, store
from prodagent.jobs.allocations import ACQUIRED, ACTIVE, UNRUNNABLE
from prodagent.jobs.layout import Layout
from prodagent.jobs.specs import (
    MAX_REASON_CHARS,
    Workflow,
    WorkflowUnrunnable,
    describe,
    parse_workflow,
    production_attempt,
    write_attempt,
    write_production,
)
from prodagent.payload.jobspec import JobSpec
from prodagent.runtime.component import Component, Context, handles
from prodmanager.text import one_line
from prodrequest.spec import ProcessingWorkflow

#: OSErrors of the agent's disk, not of an allocation: the batch is retried, nobody given up
_ENVIRONMENT_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO, errno.EMFILE, errno.ENFILE})


@dataclass(frozen=True)
class _Plan:
    """One allocation's jobs, built in memory: rows to insert and the specs to write."""

    alloc: Any
    workflow: Workflow
    rows: list[dict[str, Any]]
    specs: list[tuple[Path, JobSpec]]


class JobCreatorSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # Job specs written at once: each is fsync'ed, and the waits overlap instead of adding up.
    write_workers: int = Field(8, ge=1)
    reconcile_s: float = Field(60.0, gt=0)  # allocations and cool-offs left waiting this long: acted on


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
        """Allocations still `acquired`, and cool-offs over, for longer than `reconcile_s`: their
        `AllocationAcquired` or `RetryJob` was lost. The handlers do the work (idempotent, under lock)."""
        agent, before = self.config.agent.name, time.time() - self.settings.reconcile_s
        waiting = [a.id for a in store.allocations_in(ctx.conn, agent, [ACQUIRED]) if a.acquired_at < before]
        if waiting:
            self.log.warning("%d allocation(s) acquired but without jobs (AllocationAcquired lost?): creating",
                             len(waiting))
            self.on_allocation(ctx, {"allocation_ids": waiting})
        policy = self.config.component_settings("ErrorHandler", ErrorHandlerSettings)
        due = cooloffs_over(ctx.conn, agent, policy, before)
        if due:
            self.log.warning("%d job(s) past their cool-off (RetryJob lost?): retrying", len(due))
            self.on_retry(ctx, {"job_ids": due, "reason": "retry after cool-off (reconciled)"})

    def _create_for(self, ctx: Context, allocation_ids: list[str]) -> list[int]:
        """Jobs of every allocation still `acquired`: built in memory one allocation at a time,
        then recorded in bulk (one insert, one update). If recording the batch fails, each
        allocation is recorded alone in its own savepoint, so only the one at fault is given up."""
        locked = {a.id: a for a in store.allocations(ctx.conn, allocation_ids, lock=True)}
        plans: list[_Plan] = []
        for allocation_id in dict.fromkeys(allocation_ids):
            alloc = locked.get(allocation_id)
            if alloc is None or alloc.state != ACQUIRED:
                continue
            try:
                plans.append(self._plan(alloc))
            except Exception as exc:
                self._give_up(ctx, alloc, exc)
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

    def _plan(self, alloc: Any) -> _Plan:
        """The allocation's job rows and specs, validated, nothing written."""
        workflow = parse_workflow(alloc.workflow)  # once per workflow text (cached)
        inputs = _input_files(alloc) if isinstance(workflow, ProcessingWorkflow) else None
        rows = self._rows(alloc, workflow) if inputs is None else [self._processing_row(alloc, workflow, inputs)]
        specs = [production_attempt(self.layout, SimpleNamespace(**row), workflow, inputs) for row in rows]
        return _Plan(alloc, workflow, rows, specs)

    def _record(self, ctx: Context, plans: list[_Plan]) -> list[int]:
        """Insert the plans' jobs, then write their specs (after the rows: a job row never
        commits without its spec; a rolled-back batch leaves only files rewritten identically)."""
        datasets: dict[str, int] = {}
        rows: list[dict[str, Any]] = []
        reasons: list[str] = []
        for plan in plans:
            output = plan.workflow.output
            if output.dataset not in datasets:
                datasets[output.dataset] = store.ensure_dataset(
                    ctx.conn, self.config.agent.name, output.dataset, output.tier, plan.alloc.request_id,
                    plan.workflow.merge.model_dump(mode="json"),
                )
            rows += [{**row, "dataset_id": datasets[output.dataset]} for row in plan.rows]
            reasons += [f"allocation {plan.alloc.id}"] * len(plan.rows)
        ids = store.insert_jobs(ctx.conn, rows, reason=reasons)
        # Specs only touch the disk, each fsync'ed: in parallel, so the waits overlap.
        list(self.pool.map(lambda attempt_spec: write_production(*attempt_spec),
                           [attempt_spec for plan in plans for attempt_spec in plan.specs]))
        store.set_allocations(ctx.conn, [plan.alloc.id for plan in plans], state=ACTIVE)
        return ids

    def _give_up(self, ctx: Context, alloc: Any, exc: Exception) -> None:
        """Mark a poison allocation `unrunnable` with why; re-raise what is not its fault."""
        if _environment_fault(exc):
            raise exc
        reason = unrunnable_reason(exc)
        store.set_allocation(ctx.conn, alloc.id, state=UNRUNNABLE, reason=reason)
        self.log.error("allocation %s of request %s is unrunnable: %s", alloc.id, alloc.request_id, reason)

    def _rows(self, alloc: Any, workflow: Workflow) -> list[dict[str, Any]]:
        """The job rows of one Monte Carlo allocation (without their dataset)."""
        assert not isinstance(workflow, ProcessingWorkflow)
        per_job = workflow.events.per_job
        end = alloc.first_event + alloc.n_events
        return [self._row(alloc, workflow, k, first, min(per_job, end - first), alloc.run)
                for k, first in enumerate(range(alloc.first_event, end, per_job))]

    def _processing_row(self, alloc: Any, workflow: Workflow, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        """The one job of a processing allocation: its files' run when they share one."""
        if not inputs:
            raise ValueError("a processing allocation without input files")
        runs = {f.get("run") for f in inputs}
        run = runs.pop() if len(runs) == 1 and None not in runs else alloc.run
        return self._row(alloc, workflow, 0, 0, int(alloc.n_events), int(run))

    def _row(self, alloc: Any, workflow: Workflow, k: int, first: int, n_events: int, run: int) -> dict[str, Any]:
        name = f"{self.config.agent.name}-r{alloc.request_id}-a{alloc.id}-{k}"
        return {
            "agent": self.config.agent.name, "name": name, "job_type": "production",
            "allocation_id": alloc.id, "request_id": alloc.request_id,
            "retry": 0, "max_retries": workflow.retry.max_retries,
            "first_event": first, "n_events": n_events,
            "seed": alloc.seed + k, "run": run, "job_index": payload_index(alloc, k),
            "memory_mb": workflow.resources.memory_mb, "time_s": workflow.resources.time_s,
            "workdir": str(self.layout.job_dir(alloc.request_id, name)),
        }

    @handles("RetryJob")
    def on_retry(self, ctx: Context, payload: dict[str, Any]) -> None:
        """A job's cool-off is over (or an operator resubmitted it): prepare its next attempt.

        Each job in a savepoint of its own: one whose next attempt cannot be built fails alone
        (from cool-off it is paused for an operator, with why), the others go on."""
        ready: list[int] = []
        for job in store.jobs(ctx.conn, payload["job_ids"]):
            if job.state not in states.allowed_from(states.CREATED):
                continue
            try:
                with ctx.conn.begin_nested():
                    ready += self._next_attempt(ctx, job, payload.get("reason", "retry"))
            except Exception as exc:
                if _environment_fault(exc):
                    raise
                self._hold(ctx, job, exc)
        if ready:
            ctx.publish("JobCreated", {"job_ids": ready})

    def _next_attempt(self, ctx: Context, job: Any, reason: str) -> list[int]:
        moved = store.transition(ctx.conn, [job.id], states.CREATED, reason, retry=job.retry + 1)
        if not moved.ids:
            return []
        (fresh,) = store.jobs(ctx.conn, moved.ids)
        workflow = store.workflow_for_request(ctx.conn, fresh.request_id)
        if workflow is None:
            raise LookupError(f"no workflow for request {fresh.request_id}")
        write_attempt(ctx.conn, self.layout, fresh, workflow)
        return [fresh.id]

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
