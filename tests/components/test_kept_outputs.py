"""JobTracker registers a multi-step job's kept intermediate output in its own dataset, with
the job as producer, and every output knows the files its job read (parentage across tasks)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import sqlalchemy as sa

from prodagent.components.job_tracker import JobTracker
from prodagent.db.schema import pa_allocation
from prodagent.jobs import states, store
from prodagent.jobs.layout import Layout
from prodagent.payload.report import JobReport, OutputFile
from tests.components.merge_env import DATASET, REQUEST, MergeWorld

KEPT = "/Keep/gen-v1/GEN"
RAW = "/store/raw/cdr12019-275772.raw"


def test_kept_outputs_get_their_dataset_and_every_output_its_inputs(world: MergeWorld) -> None:
    def prepare(conn: sa.Connection) -> int:
        conn.execute(pa_allocation.update().where(pa_allocation.c.id == "a1")
                     .values(input_files=json.dumps([{"lfn": RAW, "events": 5}])))
        store.ensure_dataset(conn, "mt", KEPT, "GEN", REQUEST, {})
        (job_id,) = store.insert_jobs(conn, [{
            "agent": "mt", "name": f"mt-r{REQUEST}-a1-keep", "job_type": "production", "allocation_id": "a1",
            "request_id": REQUEST, "dataset_id": world.dataset_id, "workdir": "/nonexistent"}], reason="test")
        for step in (states.SUBMITTED, states.RUNNING, states.SUCCESS):
            store.transition(conn, [job_id], step, "test")
        return job_id

    job = world.job(world.tx(prepare))
    facts = {"size": 10, "adler32": "0000000a", "events": 5, "run": 7, "first_event": 1}
    now = datetime.now(UTC)
    report = JobReport(
        job_id=job.name, job_type="production", exit_code=0, status="success", log_path="/nonexistent",
        started_at=now, ended_at=now, outputs=[OutputFile(path="/w/out.root", **facts)],
        kept=[OutputFile(path="/w/gen.root", step="main", dataset=KEPT, **facts)])
    tracker = JobTracker(world.config, world.service)
    for _ in range(2):  # idempotent
        world.call(lambda ctx: tracker._register_outputs(ctx, [job], {job.id: report}))

    files = {f.lfn: f for f in world.files(job_id=job.id)}
    own, kept = Layout.lfn(DATASET, "unmerged", job.name), Layout.lfn(KEPT, "unmerged", job.name)
    assert set(files) == {own, kept}
    kept_ds = world.tx(lambda conn: store.dataset_id(conn, "mt", KEPT))
    assert (files[kept].dataset_id, files[kept].pfn, files[own].dataset_id) == (kept_ds, "/w/gen.root", world.dataset_id)
    lineage = world.tx(lambda conn: store.lineage(conn, [files[own].id, files[kept].id]))
    assert lineage == {files[own].id: sorted([RAW, kept]), files[kept].id: [RAW]}
