"""Stage-out by the real job wrapper to a real XRootD server, including a 30 s server outage."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

from prodagent.payload import codes, rootio
from prodagent.payload.jobspec import JobSpec, write_spec
from prodagent.payload.report import read_report
from prodagent.storage.base import ElementSpec
from prodagent.storage.registry import open_element
from prodagent.storage.settings import StageOutPolicy
from prodagent.storage.transfer import Destination, StageOutSpec

EVENTS = 40


def _job(root: Path, index: int, rule: str, policy: StageOutPolicy) -> Path:
    jobdir = root / f"job{index}"
    jobdir.mkdir(parents=True)
    stageout = StageOutSpec(lfn=f"/store/mc/Outage/unmerged/job{index}.root", policy=policy,
                            by_site={"*": Destination(name="disk", element=ElementSpec(plugin="xrootd", pfn=rule))})
    write_spec(jobdir, JobSpec(job_id=f"job{index}", job_type="production", transformation="pythia",
                               params={"chunk": 20}, events=EVENTS, first_event=index * EVENTS + 1,
                               seed=index + 1, output_path="out.root", stageout=stageout))
    return jobdir


def _run(jobdirs: list[Path], timeout: float) -> list[int]:
    """Run the wrapper on each job at once, its stderr to JOBDIR/wrapper.err; the exit statuses."""
    procs = []
    for d in jobdirs:
        with open(d / "wrapper.err", "wb") as err:
            procs.append(subprocess.Popen([sys.executable, "-m", "prodagent.payload.runjob", str(d)],
                                          stdout=subprocess.DEVNULL, stderr=err))
    return [p.wait(timeout=timeout) for p in procs]


def _said(jobdir: Path) -> str:
    err = jobdir / "wrapper.err"
    return err.read_text() if err.exists() else ""


def test_server_down_for_30s_during_stageout_nothing_lost_or_duplicated(own_xrootd_server, tmp_path):
    server = own_xrootd_server
    rule = server.pfn_rule("disk")
    policy = StageOutPolicy(attempts=30, backoff_s=1.0, backoff_max_s=4.0, max_s=120.0)
    jobdirs = [_job(tmp_path, i, rule, policy) for i in range(3)]
    server.stop()
    started = time.monotonic()

    def restart_when_every_job_has_failed_once() -> None:
        # Down for 30 s and until each job has met the outage (a loaded machine may take longer
        # than 30 s to reach its stage-out), then up again.
        deadline = started + 150
        while time.monotonic() < deadline and not (
            time.monotonic() - started >= 30
            and all("attempt 1 failed" in _said(d) for d in jobdirs)
        ):
            time.sleep(0.5)
        server.start()

    restarted = threading.Thread(target=restart_when_every_job_has_failed_once)
    restarted.start()
    try:
        statuses = _run(jobdirs, timeout=240)
    finally:
        restarted.join()
    assert time.monotonic() - started >= 30  # the jobs could only finish once the server was back
    assert statuses == [0, 0, 0]
    element = open_element(ElementSpec(plugin="xrootd", pfn=rule), "disk")
    assert sorted(element.list("mc")) == [f"mc/Outage/unmerged/job{i}.root" for i in range(3)]  # no temp, no copy
    events = []
    for i, jobdir in enumerate(jobdirs):
        report = read_report(jobdir)
        assert report is not None and report.ok, report
        [out] = report.outputs
        assert out.element == "disk" and out.path == element.pfn(f"mc/Outage/unmerged/job{i}.root")
        assert element.verify(f"mc/Outage/unmerged/job{i}.root", out.adler32).size == out.size
        assert not (jobdir / "out.root").exists()  # the local copy goes once the replica is verified
        said = _said(jobdir)
        assert "attempt 1 failed" in said and "(1 attempt(s))" not in said  # retried, then staged out
        assert out.stageout_s is not None and out.stageout_s >= 1.0  # at least one 1 s backoff
        with rootio.open_file(out.path) as f:
            events += f["events"].arrays(["event"], library="np")["event"].tolist()
    assert sorted(events) == list(range(1, 3 * EVENTS + 1))  # every event once


def test_stageout_that_never_succeeds_is_its_own_failure(tmp_path):
    rule = "root://127.0.0.1:1//disk/{lfn}"  # nothing listens on port 1
    policy = StageOutPolicy(attempts=2, backoff_s=0.1, backoff_max_s=0.1, max_s=30)
    [jobdir] = [_job(tmp_path, 0, rule, policy)]
    [status] = _run([jobdir], timeout=120)
    report = read_report(jobdir)
    assert report is not None and not report.ok
    assert report.error_code == codes.STAGEOUT_FAILED and "after 2 attempt(s)" in (report.error_reason or "")
    assert status == codes.WRAPPER_EXIT_STATUS[codes.STAGEOUT_FAILED]
    assert not (jobdir / "out.root").exists()
