"""End to end on MariaDB with outputs on a real XRootD server: stage-out, a replica corrupted
on the element after upload (caught, its job redone), merges reading root:// inputs, archive
copies, and cleanup leaving no unmerged replica behind."""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from prodagent.config import DEFAULT_COMPONENTS
from prodagent.db.schema import pa_job, pa_job_transition, pa_replica
from prodagent.demo.stack import AgentProcesses, Manager, write_agent_config
from prodagent.payload import rootio
from prodagent.storage.base import ElementSpec
from prodagent.storage.registry import open_element
from tests.e2e.test_production import workflow

JOBS = 4
EVENTS_PER_JOB = 100  # workflow()'s


def _first_unmerged_replica(area: Path, timeout: float = 180) -> Path:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [p for p in area.rglob("*.root") if "unmerged" in p.parts and not p.name.startswith(".")]
        if found:
            return found[0]
        time.sleep(0.05)
    raise AssertionError(f"no unmerged replica appeared under {area}")


def _corrupt(path: Path) -> None:
    data = bytearray(path.read_bytes())
    for i in range(len(data) // 2, len(data) // 2 + 64):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def test_production_on_xrootd_with_archive_and_a_corrupted_replica(xrootd_server, make_mysql_db, tmp_path):
    area = f"e2e-{uuid.uuid4().hex[:8]}"
    disk = ElementSpec(plugin="xrootd", pfn=xrootd_server.pfn_rule(f"disk/{area}"))
    tape = ElementSpec(plugin="xrootd", pfn=xrootd_server.pfn_rule(f"archive/{area}"))
    storage = {"elements": {"disk": disk.model_dump(), "tape": tape.model_dump()}, "default": "disk",
               "archive": "tape", "stageout": {"attempts": 4, "backoff_s": 0.5, "backoff_max_s": 2, "max_s": 60}}
    manager = Manager(tmp_path / "pm", f"sqlite:///{tmp_path / 'pm' / 'pm.db'}", lease_s=120)
    manager.start()
    workdir = tmp_path / "agent"
    agent = AgentProcesses(write_agent_config(
        tmp_path / "agent.yaml", workdir, manager, db_url=make_mysql_db(), storage=storage,
        settings={"Cleanup": {"tick_s": 1.0}}))
    engine = sa.create_engine(agent.config.db_url)
    try:
        # Without JobTracker nobody reads the replicas back yet: the test corrupts the first one.
        agent.start(",".join(c for c in DEFAULT_COMPONENTS if c != "JobTracker"))
        client = manager.client("requester", "tester")
        spec = workflow("xrootd-e2e", fail_plan="", jobs=JOBS, max_events=200)
        request = client.submit(spec).request
        corrupted = _first_unmerged_replica(xrootd_server.local("disk") / area)
        _corrupt(corrupted)
        agent.start("JobTracker")
        request = _wait(client, engine, request.id, workdir)

        # The corrupt replica was caught by the read-back and its job redone.
        with engine.connect() as conn:
            jobs = conn.execute(sa.select(pa_job)).all()
            trail = conn.execute(sa.select(pa_job_transition)).all()
            replicas = conn.execute(sa.select(pa_replica)).all()
        redone = [j for j in jobs if j.name == corrupted.stem]
        assert len(redone) == 1 and redone[0].retry == 1
        assert any(t.job_id == redone[0].id and t.to_state == "cooloff" and t.reason.startswith("CorruptReplica")
                   for t in trail)
        assert sum(j.retry for j in jobs) == 1  # nothing else was retried

        # The merged files, read back through root://, hold exactly the requested events.
        merged = json.loads(agent.cli("files", "list", "--kind", "merged", "--json").stdout)
        assert len(merged) == JOBS * EVENTS_PER_JOB // 200
        keys = []
        for f in merged:
            assert f["pfn"].startswith(f"{xrootd_server.url}//disk/{area}/")
            with rootio.open_file(f["pfn"]) as root:  # uproot, reading root:// directly
                arrays = root["events"].arrays(["run", "event"], library="np")
            keys += list(zip(arrays["run"].tolist(), arrays["event"].tolist(), strict=True))
        assert len(keys) == len(set(keys)) == request.total_events == JOBS * EVENTS_PER_JOB

        # Each merged file has a verified archive copy whose checksum matches the catalog's.
        tape_se = open_element(tape, "tape")
        for f in merged:
            shown = json.loads(agent.cli("files", "show", f["lfn"], "--json").stdout)
            by_role = {r["role"]: r for r in shown["replicas"]}
            assert {r: by_role[r]["state"] for r in by_role} == {"merged": "verified", "archive": "verified"}
            copy = by_role["archive"]
            assert copy["adler32"] == f["adler32"] and copy["element"] == "tape"
            assert tape_se.verify(tape_se.lfn_of(copy["pfn"]), f["adler32"]).size == f["size"]

        # No unmerged replica is left, on the element or in the work area.
        unmerged = [r for r in replicas if r.role == "unmerged"]
        assert len(unmerged) == JOBS and Counter(r.state for r in unmerged) == {"deleted": JOBS}
        left = [p for p in (xrootd_server.local("disk") / area).rglob("*") if p.is_file() and "unmerged" in p.parts]
        assert left == []
        assert not [p for p in (workdir / "data").rglob("*") if p.is_file()]
    finally:
        agent.stop()
        manager.stop()
        engine.dispose()


def _wait(client: Any, engine: sa.Engine, request_id: int, workdir: Path, timeout: float = 150) -> Any:
    """Until every event is merged, every job is cleaned and no unmerged replica is live."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        request = client.get(request_id)
        with engine.connect() as conn:
            busy = conn.execute(sa.select(sa.func.count()).select_from(pa_job).where(pa_job.c.state != "cleaned")).scalar()
            live = conn.execute(sa.select(sa.func.count()).select_from(pa_replica).where(
                pa_replica.c.role == "unmerged", pa_replica.c.state != "deleted")).scalar()
        if request.counters.events_merged >= request.total_events and not busy and not live:
            return request
        time.sleep(1.0)
    logs = "\n".join(p.read_text()[-3000:] for p in (workdir / "logs").glob("*.log"))
    with engine.connect() as conn:
        jobs = [(j.name, j.state, j.retry, j.error_reason) for j in conn.execute(sa.select(pa_job))]
        replicas = [(r.file_id, r.role, r.state) for r in conn.execute(sa.select(pa_replica))]
    raise AssertionError(f"production did not finish: jobs {jobs}, replicas {replicas}, "
                         f"counters {request.counters}\n{logs}")
