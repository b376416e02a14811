"""A small agent world for the MergeSensor and Cleanup tests, on a real database and real files.

`produced_files` (once per session) runs the real job wrapper on a few Pythia production jobs.
`MergeWorld` copies them into an agent's work area as finished production jobs of one request
(jobs in `success`, outputs registered as unmerged files, as JobTracker leaves them), and runs
the merge jobs MergeSensor creates with the real wrapper, as a batch plugin would.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from prodagent.config import AgentConfig, config_from_dict
from prodagent.db.schema import ms_message, pa_allocation, pa_file, pa_job
from prodagent.jobs import states, store
from prodagent.jobs.layout import Layout
from prodagent.messaging.message import Outgoing
from prodagent.messaging.service import MessageService
from prodagent.payload.jobspec import JobSpec, read_spec, write_spec
from prodagent.payload.report import LOG_NAME, JobReport, read_report, write_report
from prodagent.runtime.component import Component, Context
from prodagent.runtime.runner import declare_subscriptions, open_service, wait_for_database

REQUEST = "42"
DATASET = "/MinBias/MergeTest/GEN"
EVENTS = (50, 60, 50)
OBSERVER = "Observer"  # a subscriber of everything the tested components publish
OBSERVED = ["JobCreated", "JobFailed", "MergeAccepted", "RetryJob"]


@dataclass(frozen=True)
class Produced:
    """One finished production attempt: its work area and its output."""

    attempt: Path
    output: Path
    report: JobReport


def run_wrapper(attempt: Path, timeout: float = 120) -> JobReport:
    """The job wrapper on one attempt directory, as every batch plugin runs it."""
    subprocess.run([sys.executable, "-m", "prodagent.payload.runjob", str(attempt)],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=timeout, check=False)
    report = read_report(attempt)
    assert report is not None, f"{attempt}: no report.json"
    return report


_PRODUCED: list[Produced] = []  # shared by every test module importing the fixture


@pytest.fixture(scope="session")
def produced_files(tmp_path_factory: pytest.TempPathFactory) -> list[Produced]:
    """Three real production attempts (50, 60, 50 events; consecutive event numbers), made once."""
    if _PRODUCED:
        return _PRODUCED
    root = tmp_path_factory.mktemp("produced")
    attempts = []
    first = 1
    for i, n in enumerate(EVENTS):
        attempt = root / f"prod{i}" / "attempt-0"
        attempt.mkdir(parents=True)
        write_spec(attempt, JobSpec(job_id=f"prod{i}", job_type="production", transformation="pythia",
                                    params={"process": "minbias"}, events=n, first_event=first, run=7,
                                    seed=300 + i, output_path=str(attempt / "out.root")))
        attempts.append(attempt)
        first += n
    procs = [subprocess.Popen([sys.executable, "-m", "prodagent.payload.runjob", str(a)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for a in attempts]
    for attempt, proc in zip(attempts, procs, strict=True):
        proc.wait(timeout=120)
        report = read_report(attempt)
        assert report is not None and report.ok, report
        _PRODUCED.append(Produced(attempt, attempt / "out.root", report))
    return _PRODUCED


_MERGED: list[Produced] = []


def merge_template(produced: list[Produced]) -> Produced:
    """One real merge of all of `produced`, run once; reused where the merge itself is not tested."""
    if not _MERGED:
        attempt = produced[0].attempt.parent.parent / "merge" / "attempt-0"
        attempt.mkdir(parents=True)
        write_spec(attempt, JobSpec(job_id="merge", job_type="merge", transformation="merge",
                                    inputs=[str(p.output) for p in produced],
                                    input_events=[p.report.outputs[0].events or 0 for p in produced],
                                    output_path=str(attempt / "merged.root")))
        report = run_wrapper(attempt)
        assert report.ok, report
        _MERGED.append(Produced(attempt, attempt / "merged.root", report))
    return _MERGED[0]


def workflow(**merge: Any) -> dict[str, Any]:
    return {
        "kind": "montecarlo", "name": "merge-test",
        "payload": {"transformation": "pythia", "version": "8.317", "parameters": {"process": "minbias"}},
        "events": {"total": sum(EVENTS), "per_job": 50},
        "output": {"dataset": DATASET, "tier": "GEN"},
        "merge": {"enabled": True, "min_size_bytes": 1, "max_size_bytes": 10**9, "max_events": 10**6,
                  "max_wait_s": 3600, **merge},
        "retry": {"max_retries": 2, "cooloff": "linear", "base_s": 0},
        "resources": {"memory_mb": 1500, "time_s": 600},
    }


class MergeWorld:
    """An agent config, its message service, and helpers to drive components directly."""

    def __init__(self, tmp_path: Path, db_url: str, merge: dict[str, Any] | None = None) -> None:
        self.config: AgentConfig = config_from_dict({
            "agent": {"name": "mt", "workdir": str(tmp_path / "agent")},
            "database": {"url": db_url, "connect_retries": 10, "retry_wait_s": 0.5},
            "components": {"enabled": ["JobCreator", "JobSubmitter", "ErrorHandler", "MergeSensor", "Cleanup"]},
        })
        wait_for_database(self.config)
        self.service: MessageService = open_service(self.config)
        declare_subscriptions(self.config, self.service)
        self.service.declare(OBSERVER, OBSERVED)
        self.layout = Layout(self.config)
        self.workflow = workflow(**(merge or {}))
        self.dataset_id = self.tx(self._request)

    def close(self) -> None:
        self.service.engine.dispose()

    def tx(self, work: Any) -> Any:
        return self.service.tx.run(work)

    def _request(self, conn: sa.Connection) -> int:
        now = time.time()
        conn.execute(pa_allocation.insert().values(
            id="a1", agent="mt", request_id=REQUEST, request_name="merge-test", lease_token="x",
            lease_expires_at=now + 3600, workflow=json.dumps(self.workflow), state="done",
            acquired_at=now, updated_at=now))
        return store.ensure_dataset(conn, "mt", DATASET, "GEN", REQUEST, self.workflow["merge"])

    def component(self, cls: type[Component]) -> Component:
        made = cls(self.config, self.service)
        made.setup()
        return made

    def call(self, fn: Any, payload: dict[str, Any] | None = None) -> list[Outgoing]:
        """Run a handler (or a tick or reconcile, without payload) in one transaction, publishing
        what it publishes as its component (a declared producer)."""
        def work(conn: sa.Connection) -> list[Outgoing]:
            ctx = Context(conn)
            if payload is None:
                fn(ctx)
            else:
                fn(ctx, payload)
            source = getattr(getattr(fn, "__self__", None), "name", None)
            self.service.publish_many(conn, ctx.outbox, source=source)
            return ctx.outbox
        return self.tx(work)

    # -- production jobs and their files -----------------------------------------------------

    def add_production(self, produced: list[Produced], age_s: float = 0.0) -> list[int]:
        """Finished production jobs, their work areas and unmerged files (as JobTracker leaves them)."""
        def work(conn: sa.Connection) -> list[int]:
            start = len(list(conn.execute(sa.select(pa_job.c.id).where(pa_job.c.job_type == "production"))))
            rows = []
            for k in range(len(produced)):
                name = f"mt-r{REQUEST}-a1-{start + k}"
                rows.append({"agent": "mt", "name": name, "job_type": "production", "allocation_id": "a1",
                             "request_id": REQUEST, "dataset_id": self.dataset_id, "job_index": start + k,
                             "workdir": str(self.layout.job_dir(REQUEST, name))})
            ids = store.insert_jobs(conn, rows, reason="test")
            for step in (states.SUBMITTED, states.RUNNING, states.SUCCESS):
                store.transition(conn, ids, step, "test")
            files = []
            for job, made in zip(store.jobs(conn, ids), produced, strict=True):
                shutil.copytree(made.attempt, Layout.attempt_dir(job.workdir, 0),
                                ignore=shutil.ignore_patterns("*.root"))
                target = self.layout.unmerged_path(DATASET, job.name)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(made.output, target)
                out = made.report.outputs[0]
                files.append({"lfn": Layout.lfn(DATASET, "unmerged", job.name), "pfn": str(target),
                              "dataset_id": self.dataset_id, "job_id": job.id, "kind": "unmerged",
                              "state": "new", "size": out.size, "adler32": out.adler32, "events": out.events,
                              "first_event": out.first_event, "run": out.run})
            store.insert_files(conn, files)
            if age_s:
                conn.execute(pa_file.update().where(pa_file.c.job_id.in_(ids))
                             .values(created_at=time.time() - age_s))
            return ids
        return self.tx(work)

    def add_running_job(self) -> int:
        """A production job of the request still running: the request is not idle."""
        def work(conn: sa.Connection) -> int:
            (job_id,) = store.insert_jobs(conn, [{
                "agent": "mt", "name": f"mt-r{REQUEST}-a1-live-{time.monotonic_ns()}", "job_type": "production",
                "allocation_id": "a1", "request_id": REQUEST, "dataset_id": self.dataset_id, "workdir": "/nonexistent",
            }], reason="test")
            store.transition(conn, [job_id], states.SUBMITTED, "test")
            store.transition(conn, [job_id], states.RUNNING, "test")
            return job_id
        return self.tx(work)

    def files(self, **where: Any) -> list[Any]:
        query = sa.select(pa_file).order_by(pa_file.c.id)
        for key, value in where.items():
            query = query.where(pa_file.c[key] == value)
        return self.tx(lambda conn: list(conn.execute(query)))

    def jobs(self, job_type: str | None = None) -> list[Any]:
        query = sa.select(pa_job).order_by(pa_job.c.id)
        if job_type:
            query = query.where(pa_job.c.job_type == job_type)
        return self.tx(lambda conn: list(conn.execute(query)))

    def job(self, job_id: int) -> Any:
        return self.tx(lambda conn: store.jobs(conn, [job_id])[0])

    def messages(self, msg_type: str, component: str = OBSERVER) -> list[dict[str, Any]]:
        rows = self.tx(lambda conn: conn.execute(
            sa.select(ms_message.c.payload).where(ms_message.c.component == component,
                                                  ms_message.c.msg_type == msg_type).order_by(ms_message.c.id)
        ).scalars().all())
        return [json.loads(r) for r in rows]

    # -- merge jobs --------------------------------------------------------------------------

    def run_merge(self, job_id: int) -> JobReport:
        """Submit, run (real wrapper) and finish a merge job as the submitter and tracker would."""
        job = self.job(job_id)
        self.tx(lambda conn: store.transition(conn, [job_id], states.SUBMITTED, "test"))
        report = run_wrapper(Layout.attempt_dir(job.workdir, job.retry))
        self.finish(job_id, report)
        return report

    def replay_merge(self, job_id: int, template: Produced) -> JobReport:
        """Finish a merge job with a copy of an identical real merge's output, log and report."""
        job = self.job(job_id)
        attempt = Layout.attempt_dir(job.workdir, job.retry)
        output = Path(read_spec(attempt).output_path or "")
        output.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(template.output, output)
        shutil.copy(template.attempt / LOG_NAME, attempt / LOG_NAME)
        report = template.report.model_copy(update={
            "job_id": job.name, "log_path": str(attempt / LOG_NAME),
            "outputs": [template.report.outputs[0].model_copy(update={"path": str(output)})],
        })
        write_report(attempt, report)
        self.tx(lambda conn: store.transition(conn, [job_id], states.SUBMITTED, "test"))
        self.finish(job_id, report)
        return report

    def finish(self, job_id: int, report: JobReport) -> None:
        def work(conn: sa.Connection) -> None:
            store.transition(conn, [job_id], states.RUNNING, "test")
            to = states.SUCCESS if report.ok else states.JOBFAILED
            store.transition(conn, [job_id], to, "test", events_done=report.events_processed,
                             exit_code=report.exit_code, error_code=report.error_code)
        self.tx(work)


def unmerged_files_on_disk(world: MergeWorld) -> list[Path]:
    return [p for p in (world.config.workdir / "data" / "unmerged").rglob("*") if p.is_file()]


def accepted_merge(world: MergeWorld, produced: list[Produced], replay: bool = False) -> tuple[Any, dict[str, Any]]:
    """Production jobs of `produced`, merged and accepted: (merge job, MergeAccepted payload).

    The merge runs for real, or with `replay` is a copy of the one real merge of the same files.
    """
    from prodagent.components.merge_sensor import MergeSensor

    prod = world.add_production(produced)
    sensor = world.component(MergeSensor)
    world.call(sensor.on_success, {"job_ids": prod})
    (merge,) = world.jobs("merge")
    if replay:
        world.replay_merge(merge.id, merge_template(produced))
    else:
        world.run_merge(merge.id)
    out = world.call(sensor.on_success, {"job_ids": [merge.id]})
    assert [m.msg_type for m in out] == ["MergeAccepted"], out
    return world.job(merge.id), out[0].payload
