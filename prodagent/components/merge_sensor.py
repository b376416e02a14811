"""MergeSensor: groups unmerged files into merge jobs, and accepts or refuses finished merges.

On `JobSuccess` of production jobs, and on every tick, each dataset's waiting files are grouped
by the request's merge settings (`prodagent.jobs.merging`; merged per run, only runs whose gate
ProdManager opened, copied into `pa_run` by ProdMgrInterface); each ready group becomes a merge job
(through `JobCreated`, the same submit path as production). On `JobSuccess` of a merge job the
merge is judged: it is accepted only if the merged file holds exactly the events of its inputs.

    accepted: the merged file is registered (final), with its inputs as parents; the inputs go
              merging -> merged; `MergeAccepted {"merge_job_id", "dataset_id", "file_id"}`
    refused:  the merged output is deleted and not registered; the job goes success -> jobfailed
              (error class MergeRefused) and `JobFailed` lets the ErrorHandler retry it with the
              same inputs, which stay "merging" on the job

A second delivery changes nothing: a merge already judged has its merged file registered (or
its job is no longer in `success`), and grouping only takes files still "new".

Nothing waits on a lost `JobSuccess`: the tick groups every dataset's waiting files, and every
`reconcile_s` the merge jobs in `success` for longer than that whose inputs are still `merging`
are judged (an accepted merge waiting for Cleanup is not read again).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from prodagent.jobs import states, store
from prodagent.jobs.layout import Layout
from prodagent.jobs.merging import Candidate, Group, MergePolicy, plan_merges, plan_run_merges
from prodagent.jobs.specs import write_attempt
from prodagent.payload import codes
from prodagent.payload.report import JobReport, read_report
from prodagent.runtime.component import Component, Context, handles
from prodagent.storage import catalog
from prodagent.storage.replica_states import WORKAREA


class MergeSensorSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tick_s: float = Field(5.0, gt=0)
    reconcile_s: float = Field(60.0, gt=0)


class MergeSensor(Component):
    name = "MergeSensor"
    Settings = MergeSensorSettings

    def setup(self) -> None:
        self.layout = Layout(self.config)

    @property
    def agent(self) -> str:
        return self.config.agent.name

    # -- grouping ---------------------------------------------------------------------------------

    def tick(self, ctx: Context) -> None:
        created = self.group(ctx, store.datasets_with_new_files(ctx.conn, self.agent))
        if created:
            ctx.publish("JobCreated", {"job_ids": created})

    def group(self, ctx: Context, dataset_ids: list[int]) -> list[int]:
        """Create the merge jobs of every ready group of these datasets; return their ids."""
        created: list[int] = []
        workflows: dict[str, dict[str, Any] | None] = {}
        now = time.time()
        for dataset_id in sorted(set(dataset_ids)):
            dataset = store.lock_dataset(ctx.conn, dataset_id)
            if dataset is None or dataset.agent != self.agent:
                continue
            if dataset.request_id not in workflows:
                workflows[dataset.request_id] = store.workflow_for_request(ctx.conn, dataset.request_id)
            workflow = workflows[dataset.request_id]
            if workflow is None:
                self.log.error("dataset %s: no workflow for request %s; not merged", dataset.name, dataset.request_id)
                continue
            policy = MergePolicy.from_workflow(workflow)
            files = [Candidate(f.id, int(f.size), int(f.events), float(f.created_at),
                               None if f.run is None else int(f.run))
                     for f in store.mergeable_files(ctx.conn, dataset_id)] if policy.enabled else []
            if not files:
                continue
            if policy.per_run:
                ready = store.ready_runs(ctx.conn, self.agent, dataset.request_id)
                for run, groups in plan_run_merges(files, policy, ready).items():
                    created += self._create_merges(ctx, dataset, workflow, groups, run)
                continue
            idle = not store.request_has_live_work(ctx.conn, self.agent, dataset.request_id)
            groups = plan_merges(files, policy, now, idle)
            if groups:
                created += self._create_merges(ctx, dataset, workflow, groups)
        return created

    def _create_merges(self, ctx: Context, dataset: Any, workflow: dict[str, Any], groups: list[Group],
                       run: int | None = None) -> list[int]:
        """Merge jobs of `groups`; those of one run are named by the run and a sequence number."""
        resources = workflow.get("resources", {})
        base = f"{self.agent}-merge-d{dataset.id}-" + ("" if run is None else f"run{run}-")
        taken = store.job_names_like(ctx.conn, base)
        rows, reasons = [], []
        for group in groups:
            first = f"{len(taken):03d}" if run is not None else str(group.ids[0])
            name = _free_name(f"{base}{first}", taken)
            taken.add(name)
            rows.append({
                "agent": self.agent, "name": name, "job_type": "merge", "request_id": dataset.request_id,
                "dataset_id": dataset.id, "retry": 0,
                "max_retries": int(workflow.get("retry", {}).get("max_retries", 3)),
                "n_events": group.events,
                "memory_mb": int(resources.get("memory_mb", 2000)), "time_s": int(resources.get("time_s", 3600)),
                "workdir": str(self.layout.job_dir(dataset.request_id, name)),
            })
            reasons.append(f"merge of {len(group.files)} file(s), {group.size} bytes, "
                           f"{group.events} events: {group.reason}")
        ids = store.insert_jobs(ctx.conn, rows, reason=reasons)
        for job_id, group in zip(ids, groups, strict=True):
            moved = store.assign_merge(ctx.conn, group.ids, job_id)
            if moved != len(group.ids):  # the dataset lock makes this impossible; never merge half a group
                raise RuntimeError(f"merge job {job_id}: {moved} of {len(group.ids)} inputs were still new")
        for job, why in zip(store.jobs(ctx.conn, ids), reasons, strict=True):
            write_attempt(ctx.conn, self.layout, job, workflow)
            self.log.info("dataset %s: merge job %s, %s", dataset.name, job.name, why)
        return ids

    # -- judging merges ---------------------------------------------------------------------------

    def reconcile(self, ctx: Context) -> None:
        for job in store.unjudged_merges(ctx.conn, self.agent, time.time() - self.settings.reconcile_s):
            self.judge(ctx, job)

    @handles("JobSuccess")
    def on_success(self, ctx: Context, payload: dict[str, Any]) -> None:
        jobs = store.jobs(ctx.conn, payload["job_ids"])
        for job in jobs:
            if job.job_type == "merge" and job.state == states.SUCCESS:
                self.judge(ctx, job)
        produced = [j.dataset_id for j in jobs if j.job_type == "production" and j.dataset_id is not None]
        created = self.group(ctx, produced)
        if created:
            ctx.publish("JobCreated", {"job_ids": created})

    def judge(self, ctx: Context, job: Any) -> None:
        """Accept or refuse the merge done by `job` (a merge job in state success)."""
        dataset = store.dataset(ctx.conn, job.dataset_id)
        if dataset is None:
            self.log.error("merge job %s: dataset %s unknown", job.name, job.dataset_id)
            return
        inputs = store.merge_inputs(ctx.conn, job.id, lock=True)
        lfn = Layout.lfn(dataset.name, "merged", job.name)
        if store.file_by_lfn(ctx.conn, lfn) is not None:
            return  # accepted by an earlier delivery
        if not inputs or any(f.state != "merging" for f in inputs):
            self.log.error("merge job %s: inputs not waiting for it (%s); nothing to judge", job.name,
                           sorted({f.state for f in inputs}) or "none")
            return
        expected = sum(int(f.events) for f in inputs)
        try:
            report = read_report(Layout.attempt_dir(job.workdir, job.retry))
        except ValueError as exc:
            self._refuse(ctx, job, dataset, inputs, None, (codes.WRAPPER_ERROR, f"unreadable report.json: {exc}"))
            return
        output = report.outputs[0] if report and len(report.outputs) == 1 else None
        problem = _output_problem(report, output, expected)
        if problem is not None:
            self._refuse(ctx, job, dataset, inputs, report, problem)
            return
        assert output is not None
        store.insert_files(ctx.conn, [{
            "lfn": lfn, "pfn": output.path, "dataset_id": dataset.id, "job_id": job.id, "kind": "merged",
            "state": "final", "size": output.size, "adler32": output.adler32, "events": output.events,
            "first_event": output.first_event, "run": output.run,
        }])
        merged = store.file_by_lfn(ctx.conn, lfn)
        assert merged is not None
        catalog.record(ctx.conn, [{"file_id": merged.id, "element": output.element or WORKAREA, "pfn": output.path,
                                   "role": "merged", "size": output.size, "adler32": output.adler32}])
        store.add_parents(ctx.conn, merged.id, [f.id for f in inputs])
        store.set_file_states(ctx.conn, [f.id for f in inputs], "merging", "merged")
        ctx.publish("MergeAccepted", {"merge_job_id": job.id, "dataset_id": dataset.id, "file_id": merged.id})
        self.log.info("merge job %s accepted: %s, %d events from %d file(s)", job.name, lfn, expected, len(inputs))

    def _refuse(self, ctx: Context, job: Any, dataset: Any, inputs: list[Any], report: JobReport | None,
                problem: tuple[int, str]) -> None:
        """The merge failed: its output goes, its inputs stay on the job for the retry."""
        code, why = problem
        outputs = {str(self.layout.merged_path(dataset.name, job.name))}
        outputs |= {out.path for out in report.outputs} if report else set()
        for path in outputs - {f.pfn for f in inputs}:  # whatever the report says, never an input
            if "://" not in path:  # on a storage element, the retry's stage-out replaces it whole
                Path(path).unlink(missing_ok=True)
        moved = store.transition(ctx.conn, [job.id], states.JOBFAILED, f"output refused on acceptance: {why}",
                                 error_class="MergeRefused", error_code=code, error_reason=f"merge refused: {why}")
        if moved.ids:
            ctx.publish("JobFailed", {"job_ids": moved.ids})
            self.log.warning("merge job %s refused, inputs kept for its retry: %s", job.name, why)


def _output_problem(report: JobReport | None, output: Any, expected: int) -> tuple[int, str] | None:
    """(error code, why) the merged output cannot be accepted, or None when it can."""
    if report is None:
        return codes.WRAPPER_ERROR, "no report.json"
    if not report.ok:
        return report.error_code or codes.WRAPPER_ERROR, "the job report does not say success"
    if output is None:
        return codes.MISSING_OUTPUT, f"the report lists {len(report.outputs)} outputs, expected exactly one"
    if output.events != expected:
        return codes.EVENT_COUNT_MISMATCH, f"merged file holds {output.events} events, its inputs hold {expected}"
    if output.element is not None:
        return None  # staged out: the wrapper verified it on the element and JobTracker read it back
    path = Path(output.path)
    if not path.is_file() or path.stat().st_size != output.size:
        return codes.MISSING_OUTPUT, f"merged file {path} is missing or not {output.size} bytes as reported"
    return None


def _free_name(name: str, taken: set[str]) -> str:
    """`name`, or `name-2`, `name-3`... when an earlier merge (given back by remerge) holds it."""
    if name not in taken:
        return name
    k = 2
    while f"{name}-{k}" in taken:
        k += 1
    return f"{name}-{k}"
