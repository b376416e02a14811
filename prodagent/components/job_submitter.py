"""JobSubmitter: hands created jobs to the batch plugin in bulk, within each site's limit, and
removes killed jobs from the batch system.

A site's limit is its slots plus `max_queued_per_slot` times its slots queued; jobs beyond it
stay `created` and go at the next tick. With several sites, each job goes to a site its request
allows (`sites.whitelist`/`blacklist`) that has room, weighted by the site's breaker state and
its recent success (`prodagent.jobs.site_health`, evaluated here every `health.evaluate_s`):
banned sites get nothing, probing sites a few jobs at a time, and jobs never go to a node
excluded as a black hole. Before submitting, the plugin is asked which attempts it
already holds (each carries the agent's id), so a submitter that crashed between submitting and
committing never submits an attempt twice.

Read, then call, then record: the tick reads the `created` jobs, the room per site and the
pending kills in one short transaction, asks the batch system (kill, what it holds, submit) with
no transaction open, and records the outcome in another; `JobCreated` only asks for a tick at
once. If recording fails, the next tick finds the attempts already in the batch system and
records them then.

Kills: a kill is a database fact. Whoever asks for one (`KillJobs` here, the operator command
line, ProdMgrInterface for a lost or recalled lease) moves the jobs to `killed` and marks their
batch job as to be removed (`pa_job.kill_pending_at`, `store.kill_jobs`) in its own
transaction; this tick removes the marked batch jobs and clears the marks (killing a batch job
already gone is harmless). `KillJobs` is the fast path: a lost one delays the kill by one tick
at most, never loses it.

Nothing waits on a lost message: the tick submits every `created` job and removes every marked
batch job; every `reconcile_s` the live jobs of allocations given up (lost or recalled) are
killed, as their `KillJobs` would have done (a kill already done is left as it is).
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from prodagent.batch.base import BatchJob, BatchPlugin, SiteSlots
from prodagent.batch.registry import configured_plugin
from prodagent.jobs import allocations, placement, site_states, site_store, states, store
from prodagent.jobs.layout import Layout
from prodagent.jobs.site_health import SiteBreaker, SiteHealthSettings
from prodagent.runtime.component import Component, Context, handles
from prodagent.storage.transfer import SITE_ENV

JOB_WRAPPER = ["-m", "prodagent.payload.runjob"]
GIVEN_UP = (allocations.LOST, allocations.RECALLED)  # allocation states whose live jobs are killed


class SubmitterSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    max_queued_per_slot: float = Field(1.0, ge=0)
    bulk_size: int = Field(2000, ge=1)
    tick_s: float = Field(2.0, gt=0)
    reconcile_s: float = Field(60.0, gt=0)
    health: SiteHealthSettings = Field(default_factory=SiteHealthSettings)


def batch_job(job: Any, site: str, python: str, exclude_nodes: tuple[str, ...] = ()) -> BatchJob:
    attempt_dir = str(Layout.attempt_dir(job.workdir, job.retry))
    return BatchJob(
        job_id=Layout.batch_name(job.name, job.retry),
        command=[python, *JOB_WRAPPER, attempt_dir],
        workdir=Path(attempt_dir),
        memory_mb=int(job.memory_mb * 1.2) + 100,  # the wrapper enforces the job's own limit first
        time_s=int(job.time_s * 1.2) + 60,
        site=site,
        env={SITE_ENV: site},  # the wrapper stages out to this site's storage element
        exclude_nodes=exclude_nodes,
    )


class JobSubmitter(Component):
    name = "JobSubmitter"
    Settings = SubmitterSettings
    tick_in_transaction = False  # submitting runs with no transaction open

    def setup(self) -> None:
        import sys

        self.plugin: BatchPlugin = configured_plugin(self.config)
        self.python = sys.executable
        self.breaker = SiteBreaker(self.config.agent.name, self.settings.health)
        self.evaluated_at = 0.0
        self.site_names: list[str] = []
        self.site_lists: dict[str, placement.SiteLists] = {}  # request id -> (whitelist, blacklist)

    def teardown(self) -> None:
        self.plugin.close()

    @handles("JobCreated")
    def on_created(self, ctx: Context, payload: dict[str, Any]) -> None:
        self.tick_now = True  # submit from the tick: no batch-system call inside the handler's transaction

    def tick(self, _ctx: Context | None = None) -> None:
        agent = self.config.agent.name
        now = time.time()
        due = now - self.evaluated_at >= self.settings.health.evaluate_s
        doomed, waiting = self.transaction(lambda c: (
            store.pending_kills(c.conn, agent, limit=self.settings.bulk_size),
            store.jobs_in(c.conn, agent, [states.CREATED], limit=self.settings.bulk_size),
        ))
        if doomed:
            self.remove_killed(doomed)
        capacity = self.plugin.capacity() if waiting or (due and not self.site_names) else None
        if capacity is not None:
            self.site_names = [s.site for s in capacity]
        if due:
            changes = self.transaction(lambda c: self.breaker.evaluate(c.conn, self.site_names, now))
            self.evaluated_at = now
            for change in changes:
                self.log.warning("%s", change)
        if waiting and capacity is not None:
            in_batch, health, excluded = self.transaction(lambda c: (
                store.in_batch_by_site(c.conn, agent),
                {s: r.state for s, r in site_store.health(c.conn, agent).items()},
                site_store.excluded_nodes(c.conn, agent, now),
            ))
            self._learn_site_lists(waiting)
            self.submit(waiting, in_batch, capacity, health, excluded)

    def _learn_site_lists(self, jobs: list[Any]) -> None:
        """Each request's white and black lists, read once (a request's workflow never changes)."""
        unknown = {j.request_id for j in jobs if j.request_id and j.request_id not in self.site_lists}
        if not unknown:
            return
        workflows = self.transaction(
            lambda c: {r: allocations.workflow_for_request(c.conn, r) for r in unknown})
        for request_id, workflow in workflows.items():
            self.site_lists[request_id] = placement.site_lists(workflow)

    def remove_killed(self, doomed: list[Any]) -> None:
        """Remove killed jobs' batch jobs (no transaction open), then clear their marks."""
        self.plugin.kill([Layout.batch_name(j.name, j.retry) for j in doomed])
        self.transaction(lambda c: store.clear_kill_pending(c.conn, [j.id for j in doomed]))
        self.log.info("removed %d killed job(s) from the batch system", len(doomed))

    def _room(self, in_batch_by_site: dict[str, int], capacity: list[SiteSlots],
              health: dict[str, str]) -> dict[str, int]:
        """Free places per site: limit minus this agent's jobs already in the batch system there;
        none at a banned site, at most `probe_jobs` in the batch system at a probing one."""
        in_batch = Counter(in_batch_by_site)
        room = {}
        for site in capacity:
            limit = int(site.slots * (1 + self.settings.max_queued_per_slot))
            state = health.get(site.site, site_states.NORMAL)
            if state == site_states.PROBING:
                limit = min(limit, self.settings.health.probe_jobs)
            elif state == site_states.BANNED:
                limit = 0
            room[site.site] = max(0, limit - in_batch.get(site.site, 0))
        return room

    def submit(self, jobs: list[Any], in_batch: dict[str, int], capacity: list[SiteSlots] | None = None,
               health: dict[str, str] | None = None, excluded: dict[str, tuple[str, ...]] | None = None) -> None:
        """Submit these `created` jobs within each site's room; record the outcome (no transaction open)."""
        health = health or {}
        excluded = excluded or {}
        room = self._room(in_batch, capacity or self.plugin.capacity(), health)
        chosen = placement.place(jobs, room, health, self.breaker.success,
                                 lambda j: self.site_lists.get(j.request_id, placement.NO_LISTS))
        if not chosen:
            return
        names = {Layout.batch_name(j.name, j.retry): (j, site) for j, site in chosen}
        known = self.plugin.find_submitted(list(names))
        fresh = [
            batch_job(j, site, self.python, excluded.get(site, ()))
            for name, (j, site) in names.items() if name not in known
        ]
        if known and hasattr(self.plugin, "site_of"):
            for name, site in self.plugin.site_of(list(known)).items():
                names[name] = (names[name][0], site)
        accepted = dict(known)
        if fresh:
            accepted.update(self.plugin.submit(fresh))
        per_job = {names[n][0].id: {"batch_id": bid, "site": names[n][1]} for n, bid in accepted.items() if n in names}
        refused = [j.id for n, (j, _s) in names.items() if n not in accepted]

        def record(c: Context) -> None:
            store.transition(c.conn, per_job, states.SUBMITTED, "submitted", per_job=per_job)
            failed = store.transition(c.conn, refused, states.SUBMITFAILED, "the batch system refused the job",
                                      error_class="SubmitFailed")
            if failed.ids:
                c.publish("JobFailed", {"job_ids": failed.ids})

        self.transaction(record)
        if known:
            self.log.warning("%d attempt(s) were already in the batch system; not submitted again", len(known))
        self.log.info("submitted %d job(s), %d refused", len(per_job) - len(known), len(refused))

    def reconcile(self, ctx: Context) -> None:
        doomed = store.live_jobs_of_allocations_in(ctx.conn, self.config.agent.name, GIVEN_UP)
        if doomed:
            self.log.warning("%d live job(s) of allocations given up (KillJobs lost?): killing", len(doomed))
            self.on_kill(ctx, {"job_ids": doomed, "reason": "its allocation was given up"})

    @handles("KillJobs")
    def on_kill(self, ctx: Context, payload: dict[str, Any]) -> None:
        """Record the kill (killed, batch job marked); the tick removes the batch jobs, at once."""
        moved = store.kill_jobs(ctx.conn, payload["job_ids"], payload.get("reason") or "killed")
        self.tick_now = True
        if moved.ids:
            self.log.info("killed %d job(s): %s", len(moved.ids), payload.get("reason", ""))
