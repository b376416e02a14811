"""JobCreator: turns allocations into jobs, and jobs back from cool-off into new attempts.

An allocation (an event range of a request) becomes jobs of `events.per_job` events, each with
a seed unique within the request and reproducible (the allocation's seed plus the job's offset),
a job spec and a work area. Many jobs per message; handlers are idempotent: an allocation that
already has jobs, or a job no longer in cool-off, is left as it is.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from prodagent.jobs import states, store
from prodagent.jobs.layout import Layout
from prodagent.jobs.specs import write_attempt
from prodagent.runtime.component import Component, Context, handles


class JobCreatorSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # Job specs written at once: each is fsync'ed, and the waits overlap instead of adding up.
    write_workers: int = Field(8, ge=1)


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

    def _create_for(self, ctx: Context, allocation_ids: list[str]) -> list[int]:
        """Jobs of every allocation still `acquired`, in bulk: one lock, one insert, one update."""
        locked = {a.id: a for a in store.allocations(ctx.conn, allocation_ids, lock=True)}
        workflows: dict[str, dict[str, Any]] = {}  # by the workflow's text: parsed once
        datasets: dict[str, int] = {}
        rows: list[dict[str, Any]] = []
        reasons: list[str] = []
        active: list[str] = []
        for allocation_id in dict.fromkeys(allocation_ids):
            alloc = locked.get(allocation_id)
            if alloc is None or alloc.state != "acquired":
                continue
            if alloc.workflow not in workflows:
                workflows[alloc.workflow] = store.workflow_of(alloc)
            workflow = workflows[alloc.workflow]
            if workflow.get("kind", "montecarlo") != "montecarlo":
                store.set_allocation(ctx.conn, allocation_id, state="unsupported")
                self.log.error("allocation %s: only Monte Carlo workflows are supported yet", allocation_id)
                continue
            output = workflow["output"]
            if output["dataset"] not in datasets:
                datasets[output["dataset"]] = store.ensure_dataset(
                    ctx.conn, self.config.agent.name, output["dataset"], output["tier"], alloc.request_id,
                    workflow.get("merge", {}),
                )
            fresh = self._rows(alloc, workflow, datasets[output["dataset"]])
            rows += fresh
            reasons += [f"allocation {allocation_id}"] * len(fresh)
            active.append(allocation_id)
        ids = store.insert_jobs(ctx.conn, rows, reason=reasons)
        # Production specs only touch the disk (the connection serves merge specs): in parallel.
        list(self.pool.map(
            lambda job: write_attempt(ctx.conn, self.layout, job, workflows[locked[job.allocation_id].workflow]),
            store.jobs(ctx.conn, ids),
        ))
        store.set_allocations(ctx.conn, active, state="active")
        return ids

    def _rows(self, alloc: Any, workflow: dict[str, Any], dataset_id: int) -> list[dict[str, Any]]:
        """The job rows of one allocation."""
        allocation_id = alloc.id
        per_job = int(workflow["events"]["per_job"])
        resources = workflow.get("resources", {})
        rows = []
        for k, first in enumerate(range(alloc.first_event, alloc.first_event + alloc.n_events, per_job)):
            name = f"{self.config.agent.name}-r{alloc.request_id}-a{allocation_id}-{k}"
            rows.append({
                "agent": self.config.agent.name, "name": name, "job_type": "production",
                "allocation_id": allocation_id, "request_id": alloc.request_id, "dataset_id": dataset_id,
                "retry": 0, "max_retries": int(workflow.get("retry", {}).get("max_retries", 3)),
                "first_event": first, "n_events": min(per_job, alloc.first_event + alloc.n_events - first),
                "seed": alloc.seed + k, "run": alloc.run, "job_index": int(payload_index(alloc, k)),
                "memory_mb": int(resources.get("memory_mb", 2000)), "time_s": int(resources.get("time_s", 3600)),
                "workdir": str(self.layout.job_dir(alloc.request_id, name)),
            })
        return rows

    @handles("RetryJob")
    def on_retry(self, ctx: Context, payload: dict[str, Any]) -> None:
        """A job's cool-off is over (or an operator resubmitted it): prepare its next attempt."""
        ready: list[int] = []
        for job in store.jobs(ctx.conn, payload["job_ids"]):
            if job.state not in states.allowed_from(states.CREATED):
                continue
            moved = store.transition(ctx.conn, [job.id], states.CREATED, payload.get("reason", "retry"),
                                     retry=job.retry + 1)
            if not moved.ids:
                continue
            (fresh,) = store.jobs(ctx.conn, moved.ids)
            workflow = store.workflow_for_request(ctx.conn, fresh.request_id)
            if workflow is None:
                raise LookupError(f"job {fresh.id}: no workflow for request {fresh.request_id}")
            write_attempt(ctx.conn, self.layout, fresh, workflow)
            ready.append(fresh.id)
        if ready:
            ctx.publish("JobCreated", {"job_ids": ready})


def payload_index(alloc: Any, k: int) -> int:
    """The job's index in its request: the allocation's own index when it holds one job."""
    return int(getattr(alloc, "job_index", 0) or 0) + k
