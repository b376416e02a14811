"""JobTracker: asks the batch plugin about every active job in bulk, once per cycle.

Publishes what it learns: `JobSuccess` (job report says success; production outputs are
registered as unmerged files, with their replica), `JobFailed` (the report says failure, the
batch system failed the job, or the batch system no longer knows it: `lost`, never silently left
running).

Read, then call, then record: the active jobs are read in one short transaction (those that
changed since the last cycle: `active_set`); the batch
system is asked, the reports are read and staged-out outputs are read back from their storage
element (a corrupt replica fails its job: `codes.REPLICA_CORRUPT`) with no transaction open (a
slow `condor_q` never holds the database); what was learned is recorded in another short
transaction. Recording is
idempotent: a job that moved meanwhile (killed, say) is left as it is, and only jobs that did
move are published.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from prodagent.batch.base import BatchPlugin, BatchState, BatchStatus
from prodagent.batch.registry import configured_plugin
from prodagent.jobs import site_health, site_store, states, store
from prodagent.jobs.active_set import ActiveSet
from prodagent.jobs.layout import Layout
from prodagent.payload import codes
from prodagent.payload.report import JobReport, read_report
from prodagent.runtime.component import Component, Context
from prodagent.storage import catalog
from prodagent.storage.elements import Elements
from prodagent.storage.replica_states import WORKAREA

# What a cycle reads of each active job (at 100,000 active jobs the row decoding is most of the
# read: whole rows cost three times as much), and then of the jobs that ended only.
ACTIVE_COLUMNS = (store.J.c.id, store.J.c.name, store.J.c.retry, store.J.c.state)
ENDED_COLUMNS = (*ACTIVE_COLUMNS, store.J.c.job_type, store.J.c.dataset_id, store.J.c.workdir, store.J.c.site)
LOST_CODE = 60400  # the batch system no longer knows the job
NO_REPORT_CODE = 60401  # the batch system says done, but the job left no report


class TrackerSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tick_s: float = Field(2.0, gt=0)
    query_chunk: int = Field(20000, ge=1)
    # The jobs in the batch system are read whole this often; in between, only those whose
    # state changed (see `active_set`).
    resync_s: float = Field(60.0, gt=0)


T = TypeVar("T")


class JobTracker(Component):
    name = "JobTracker"
    Settings = TrackerSettings
    tick_in_transaction = False  # the batch query runs with no transaction open

    def setup(self) -> None:
        self.plugin: BatchPlugin = configured_plugin(self.config)
        self.layout = Layout(self.config)
        self.elements = Elements(self.config.storage)
        self.last_cycle_s = 0.0
        self.active = ActiveSet(self.config.agent.name, states.IN_BATCH, ACTIVE_COLUMNS, self.settings.resync_s,
                                key=lambda job: Layout.batch_name(job.name, job.retry))

    def teardown(self) -> None:
        self.plugin.close()

    def _in_transaction(self, ctx: Context | None, work: Callable[[Context], T]) -> T:
        """`work` in the caller's transaction when given one (a benchmark), else in a short one."""
        return work(ctx) if ctx is not None else self.transaction(work)

    def tick(self, ctx: Context | None = None) -> None:
        started = time.perf_counter()
        active = self._in_transaction(ctx, lambda c: self.active.refresh(c.conn))
        if not active:
            return
        by_name = dict(self.active.keyed)
        statuses: dict[str, BatchStatus] = {}
        names = list(by_name)
        for i in range(0, len(names), self.settings.query_chunk):
            statuses.update(self.plugin.query(names[i:i + self.settings.query_chunk]))
        running: list[int] = []
        lost: dict[int, dict[str, Any]] = {}
        failed: dict[int, dict[str, Any]] = {}
        succeeded: dict[int, dict[str, Any]] = {}
        reports: dict[int, JobReport] = {}
        ended: dict[int, BatchStatus] = {}
        for name, job in by_name.items():
            status = statuses.get(name) or BatchStatus(job_id=name, state=BatchState.LOST)
            if status.state == BatchState.QUEUED:
                continue
            if status.state == BatchState.RUNNING:
                if job.state == states.SUBMITTED:
                    running.append(job.id)
                continue
            if status.state == BatchState.LOST:
                lost[job.id] = {"error_reason": status.reason or "the batch system no longer knows the job",
                                "node": status.node}
            ended[job.id] = status
        # What the rest needs of the jobs that ended only: their work area, type, dataset and site.
        details = self._in_transaction(ctx, lambda c: store.jobs(c.conn, ended, columns=ENDED_COLUMNS)) if ended else []
        for job in details:
            status = ended[job.id]
            if status.state == BatchState.LOST:
                continue
            report = self._report(job)
            if status.state == BatchState.FAILED:
                failed[job.id] = {
                    "error_class": status.error_class or "BatchFailure", "exit_code": status.exit_code,
                    "error_code": report.error_code if report else None,
                    "error_reason": status.reason or status.error_class,
                    "wall_s": status.wall_s, "cpu_s": status.cpu_s, "max_rss_mb": status.max_rss_mb,
                    "node": status.node,
                }
            elif report is None:
                failed[job.id] = {"error_class": None, "exit_code": status.exit_code, "error_code": NO_REPORT_CODE,
                                  "error_reason": "the job ended without writing report.json",
                                  "wall_s": status.wall_s, "cpu_s": status.cpu_s, "max_rss_mb": status.max_rss_mb,
                                  "node": status.node}
            else:
                usage = {"exit_code": report.exit_code, "wall_s": report.wall_s, "cpu_s": report.cpu_s,
                         "max_rss_mb": report.max_rss_mb, "node": status.node}
                if report.ok:
                    succeeded[job.id] = {"events_done": report.events_processed, **usage}
                    reports[job.id] = report
                else:
                    failed[job.id] = {"error_class": None, "error_code": report.error_code,
                                      "error_reason": report.error_reason or "job report: failed", **usage}
        self._check_replicas(succeeded, failed, reports)

        def record(c: Context) -> tuple[list[int], list[int]]:
            store.transition(c.conn, running, states.RUNNING, "running")
            gone = store.transition(c.conn, lost, states.LOST, "the batch system no longer knows the job",
                                    error_class="Lost", error_code=LOST_CODE, per_job=lost)
            done = store.transition(c.conn, failed, states.JOBFAILED, "the job failed", per_job=failed)
            by_reason: dict[str, list[int]] = {}
            for job_id in succeeded:  # a multi-step job's history says which steps ran or were reused
                by_reason.setdefault(success_reason(reports[job_id]), []).append(job_id)
            ok_ids = set()
            for why, ids in by_reason.items():
                ok_ids |= set(store.transition(c.conn, ids, states.SUCCESS, why, error_class=None,
                                               per_job={i: succeeded[i] for i in ids}).ids)
            ok = store.Moved(sorted(ok_ids), {})
            self._register_outputs(c, [j for j in details if j.id in ok_ids], reports)
            if ok.ids:
                c.publish("JobSuccess", {"job_ids": ok.ids})
            bad = sorted(set(done.ids) | set(gone.ids))
            if bad:
                c.publish("JobFailed", {"job_ids": bad})
            self._record_site_results(c, details, ok.ids, done.ids, gone.ids, {**lost, **failed, **succeeded})
            return ok.ids, bad

        ok_ids, bad = self._in_transaction(ctx, record)
        self.last_cycle_s = time.perf_counter() - started
        if running or ok_ids or bad:
            self.log.info("cycle over %d active job(s) in %.2fs: %d running, %d succeeded, %d failed",
                          len(active), self.last_cycle_s, len(running), len(ok_ids), len(bad))

    def _check_replicas(self, succeeded: dict[int, dict[str, Any]], failed: dict[int, dict[str, Any]],
                        reports: dict[int, JobReport]) -> None:
        """Read staged-out outputs back (no transaction open): a corrupt replica fails its job, to
        be redone; one that cannot be read now leaves the job for the next cycle."""
        for job_id, report in list(reports.items()):
            check = self.elements.check_outputs(report)
            if check.ok:
                for out in report.outputs:
                    if out.stageout_s is not None and self.metrics:
                        self.metrics.staged_out(out.stageout_s)
                continue
            del reports[job_id]
            usage = succeeded.pop(job_id)
            if check.corrupt:
                self.log.warning("job %d: %s", job_id, check.reason)
                failed[job_id] = {"error_class": None, "error_code": codes.REPLICA_CORRUPT,
                                  "error_reason": check.reason, **{k: usage[k] for k in usage if k != "events_done"}}
            else:
                self.log.warning("job %d: %s", job_id, check.reason)

    def _record_site_results(self, ctx: Context, active: list[Any], ok: list[int], failed: list[int],
                             lost: list[int], figures: dict[int, dict[str, Any]]) -> None:
        """One row per attempt that ended in this cycle: what site health and placement learn from."""
        site_of = {j.id: j.site for j in active}
        now = time.time()
        rows = []
        for ids, good, gone in ((ok, True, False), (failed, False, False), (lost, False, True)):
            for job_id in ids:
                f = figures.get(job_id, {})
                rows.append({"agent": self.config.agent.name, "site": site_of.get(job_id) or "unknown",
                             "node": f.get("node"), "at": now, "ok": good, "wall_s": f.get("wall_s"),
                             "site_fault": not good and site_health.is_site_fault(f.get("error_class"), gone)})
        site_store.record_results(ctx.conn, rows)

    def _report(self, job: Any) -> JobReport | None:
        try:
            return read_report(Layout.attempt_dir(job.workdir, job.retry))
        except ValueError as exc:
            self.log.error("job %s: unreadable report.json: %s", job.name, exc)
            return None

    def _register_outputs(self, ctx: Context, jobs: list[Any], reports: dict[int, JobReport]) -> None:
        """Production outputs become unmerged files of their dataset, each knowing the input
        files its job read."""
        names: dict[int, str] = {}
        rows, replicas = [], []
        inputs: dict[str, list[str]] = {}  # parentage across tasks: the files each job read
        read_by = store.input_lfns_of_jobs(ctx.conn, [j.id for j in jobs if j.job_type == "production"])
        for job in jobs:
            if job.job_type != "production":
                continue
            if job.dataset_id not in names:
                dataset = store.dataset(ctx.conn, job.dataset_id)
                assert dataset is not None
                names[job.dataset_id] = dataset.name
            report = reports[job.id]
            placed = [(job.dataset_id, names[job.dataset_id], out) for out in report.outputs]
            placed += [(store.dataset_id(ctx.conn, self.config.agent.name, str(out.dataset)), str(out.dataset), out)
                       for out in report.kept]  # kept StepChain outputs: their own datasets
            read = read_by.get(job.id, [])
            for dataset_id, name, out in placed:
                lfn = Layout.lfn(name, "unmerged", job.name)
                replicas.append({"lfn": lfn, "pfn": out.path, "element": out.element or WORKAREA,
                                 "size": out.size, "adler32": out.adler32})
                rows.append({"lfn": lfn, "pfn": out.path, "dataset_id": dataset_id, "job_id": job.id,
                             "kind": "unmerged", "state": "new", "size": out.size, "adler32": out.adler32,
                             "events": out.events or 0, "first_event": out.first_event, "run": out.run})
                # the job's own output also derives from the intermediate outputs it kept
                inputs[lfn] = read + ([Layout.lfn(str(k.dataset), "unmerged", job.name) for k in report.kept]
                                      if out.step is None else [])
        ids = store.insert_files(ctx.conn, rows)
        store.add_file_inputs(ctx.conn, inputs, ids)
        catalog.record(ctx.conn, [{"file_id": ids.by_lfn[r["lfn"]], "element": r["element"], "pfn": r["pfn"],
                                   "role": "unmerged", "size": r["size"], "adler32": r["adler32"]} for r in replicas],
                       new_files=ids.new)


def success_reason(report: JobReport) -> str:
    """`job report: success`, with each step's fate for a multi-step job."""
    if not report.steps:
        return "job report: success"
    steps = ", ".join(f"{s.name} reused from attempt {s.attempt}" if s.reused else f"{s.name} ran"
                      for s in report.steps)
    return f"job report: success; steps: {steps}"
