"""HTCondor plugin: everything that needs no schedd, with the real htcondor2/classad2 bindings,
and live tests that run only where a schedd answers."""

from __future__ import annotations

from pathlib import Path

import classad2
import htcondor2
import pytest

from prodagent.batch.base import BatchJob, BatchState, BatchUnavailable
from prodagent.batch.htcondor import HTCondorPlugin
from prodagent.batch.htcondor_status import fold_events, hold_class, status_from_ad
from prodagent.batch.htcondor_submit import (
    MEMORY_HOLD_EXPR,
    description,
    item,
    quote_arguments,
    quote_environment,
)
from prodagent.batch.registry import load_plugin
from tests.batch.helpers import wait_final

HOST = "<127.0.0.1:9618?addrs=127.0.0.1-9618&alias=vm>"


class EventLogWriter:
    """Writes a job event log in HTCondor's classic text format, as a schedd and shadow do."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.second = 0

    def _event(self, code: int, cluster: int, proc: int, head: str, body: list[str]) -> None:
        self.second += 1
        stamp = f"2026-11-24 12:00:{self.second:02d}"
        lines = [f"{code:03d} ({cluster:03d}.{proc:03d}.000) {stamp} {head}", *body, "..."]
        with open(self.path, "a") as fh:
            fh.write("\n".join(lines) + "\n")

    def submit(self, cluster: int, proc: int, job_id: str) -> None:
        self._event(0, cluster, proc, f"Job submitted from host: {HOST}", [f"    {job_id}"])

    def execute(self, cluster: int, proc: int) -> None:
        self._event(1, cluster, proc, f"Job executing on host: {HOST}", [])

    def terminated(self, cluster: int, proc: int, code: int, memory_mb: int = 42) -> None:
        self._event(
            5,
            cluster,
            proc,
            "Job terminated.",
            [
                f"\t(1) Normal termination (return value {code})",
                "\t\tUsr 0 00:00:03, Sys 0 00:00:01  -  Run Remote Usage",
                "\t\tUsr 0 00:00:00, Sys 0 00:00:00  -  Run Local Usage",
                "\t\tUsr 0 00:00:03, Sys 0 00:00:01  -  Total Remote Usage",
                "\t\tUsr 0 00:00:00, Sys 0 00:00:00  -  Total Local Usage",
                "\t0  -  Run Bytes Sent By Job",
                "\t0  -  Run Bytes Received By Job",
                "\t0  -  Total Bytes Sent By Job",
                "\t0  -  Total Bytes Received By Job",
                "\tPartitionable Resources :    Usage  Request Allocated",
                "\t   Cpus                 :                 1         1",
                "\t   Disk (KB)            :       10        10      1000",
                f"\t   Memory (MB)          :       {memory_mb}       100       100",
            ],
        )

    def held(self, cluster: int, proc: int, reason: str, code: int, subcode: int = 0) -> None:
        self._event(
            12, cluster, proc, "Job was held.", [f"\t{reason}", f"\tCode {code} Subcode {subcode}"]
        )

    def released(self, cluster: int, proc: int) -> None:
        self._event(13, cluster, proc, "Job was released.", ["\tvia condor_release"])

    def aborted(self, cluster: int, proc: int, reason: str) -> None:
        self._event(9, cluster, proc, "Job was aborted.", [f"\t{reason}"])


def test_plugin_is_chosen_by_configuration_alone(tmp_path: Path) -> None:
    plugin = load_plugin("htcondor", {"event_log": str(tmp_path / "x.log"), "pool": None}, tmp_path)
    assert isinstance(plugin, HTCondorPlugin)
    assert plugin.event_log == tmp_path / "x.log"
    assert plugin.instance.startswith("pa-")


def test_argument_and_environment_quoting() -> None:
    assert quote_arguments(["-c", "exit 3"]) == "\"-c 'exit 3'\""
    assert quote_arguments(["it's", 'say "hi"', ""]) == "\"'it''s' 'say \"\"hi\"\"' ''\""
    assert quote_environment({"B": "two words", "A": "1"}) == "\"A=1 B='two words'\""
    with pytest.raises(ValueError):
        quote_arguments(["line\nbreak"])


def test_submit_description_renders_and_expands_per_item(tmp_path: Path) -> None:
    job = BatchJob(
        "job-7",
        ["sh", "-c", "echo hi; exit 3"],
        tmp_path / "j7",
        env={"X": "a b"},
        memory_mb=1500,
        time_s=600,
    )
    desc = description(str(tmp_path / "jobs.log"), "pa-test", {"accounting_group": "prod"})
    submit = htcondor2.Submit({**desc, **item(job)})
    text = str(submit)

    assert "MY.ProdAgentJobId" in text or "My.ProdAgentJobId" in text
    assert "accounting_group = prod" in text
    assert submit.expand("request_memory") == "1500"
    assert submit.expand("allowed_execute_duration") == "600"
    assert submit.expand("executable").endswith("/sh")
    assert submit.expand("arguments") == "\"-c 'echo hi; exit 3'\""
    assert submit.expand("submit_event_notes") == "job-7"
    assert submit.expand("My.ProdAgentJobId") == '"job-7"'
    assert submit.expand("initialdir") == str(tmp_path / "j7")
    assert submit.expand("requirements") == "True"


def test_excluded_nodes_become_a_requirement(tmp_path: Path) -> None:
    job = BatchJob("job-8", ["true"], tmp_path / "j8", exclude_nodes=("wn1.example", "wn2"))
    submit = htcondor2.Submit({**description(str(tmp_path / "jobs.log"), "pa-test", {}), **item(job)})
    assert submit.expand("requirements") == '(TARGET.Machine =!= "wn1.example") && (TARGET.Machine =!= "wn2")'


def test_item_data_through_a_queue_statement(tmp_path: Path) -> None:
    jobs = [
        BatchJob(f"j{i}", ["true"], tmp_path / f"j{i}", memory_mb=100 * (i + 1)) for i in range(3)
    ]
    items = [item(j) for j in jobs]
    keys = ["pa_job_id", "pa_memory_mb"]
    rows = "\n".join(" ".join(it[k] for k in keys) for it in items)
    submit = htcondor2.Submit(
        f"request_memory = $(pa_memory_mb)\nqueue {','.join(keys)} from (\n{rows}\n)\n"
    )
    assert [dict(d) for d in submit.itemdata()] == [{k: it[k] for k in keys} for it in items]


def test_memory_hold_expression() -> None:
    expr = classad2.ExprTree(MEMORY_HOLD_EXPR)
    assert expr.eval(classad2.ClassAd({"MemoryUsage": 150, "RequestMemory": 100})) is True
    assert expr.eval(classad2.ClassAd({"MemoryUsage": 50, "RequestMemory": 100})) is False
    assert expr.eval(classad2.ClassAd({"RequestMemory": 100})) is False  # not measured yet


@pytest.mark.parametrize(
    ("code", "subcode", "expected"),
    [
        (34, 0, "OUT_OF_MEMORY"),
        (3, 34, "OUT_OF_MEMORY"),
        (3, 0, "POLICY_HOLD"),
        (12, 2, "TRANSFER_OUTPUT_FAILED"),
        (13, 0, "TRANSFER_INPUT_FAILED"),
        (47, 0, "TIMEOUT"),
        (46, 0, "TIMEOUT"),
        (1, 0, "HELD_BY_USER"),
        (6, 2, "LAUNCH_FAILED"),
        (999, 0, "HELD"),
    ],
)
def test_hold_reason_codes(code: int, subcode: int, expected: str) -> None:
    assert hold_class(code, subcode) == expected


def test_status_from_job_ads() -> None:
    base = {"ClusterId": 5, "ProcId": 2}
    parsed = classad2.parseOne(
        "[ClusterId = 5; ProcId = 2; JobStatus = 4; ExitCode = 3; ExitBySignal = false;"
        " RemoteWallClockTime = 12.0; RemoteUserCpu = 7.0; RemoteSysCpu = 1.0;"
        " ResidentSetSize = 20480]"
    )
    done = status_from_ad("j", parsed)
    assert (done.state, done.exit_code, done.batch_id) == (BatchState.DONE, 3, "5.2")
    assert (done.wall_s, done.cpu_s, done.max_rss_mb) == (12.0, 8.0, 20.0)
    signalled = status_from_ad("j", {**base, "JobStatus": 4, "ExitBySignal": True, "ExitSignal": 9})
    assert signalled.exit_code == 137
    held = status_from_ad(
        "j", {**base, "JobStatus": 5, "HoldReasonCode": 34, "HoldReason": "memory"}
    )
    assert (held.state, held.error_class) == (BatchState.FAILED, "OUT_OF_MEMORY")
    removed = status_from_ad("j", {**base, "JobStatus": 3})
    assert removed.error_class == "CANCELLED"
    assert status_from_ad("j", {**base, "JobStatus": 1}).state is BatchState.QUEUED
    assert status_from_ad("j", {**base, "JobStatus": 2}).state is BatchState.RUNNING


def test_event_log_folds_to_statuses(tmp_path: Path) -> None:
    log = EventLogWriter(tmp_path / "jobs.log")
    for proc, job_id in enumerate(["ok", "bad", "hog", "gone", "retried", "waiting"]):
        log.submit(40, proc, job_id)
    log.execute(40, 0)
    log.execute(40, 1)
    log.execute(40, 2)
    log.terminated(40, 0, 0, memory_mb=42)
    log.terminated(40, 1, 3)
    log.held(40, 2, "Memory usage exceeded request_memory", 34)
    log.aborted(40, 3, "removed by prodagent")
    log.held(40, 4, "Transfer output files failure", 12, 2)
    log.submit(41, 0, "retried")  # the retry of job "retried" in a later cluster
    log.execute(41, 0)
    log.held(41, 0, "held", 21)
    log.released(41, 0)

    events = list(htcondor2.JobEventLog(str(tmp_path / "jobs.log")).events(stop_after=0))
    statuses = fold_events(events)

    assert (statuses["ok"].state, statuses["ok"].exit_code) == (BatchState.DONE, 0)
    assert statuses["ok"].max_rss_mb == 42.0 and statuses["ok"].cpu_s == 4.0
    assert statuses["ok"].wall_s == 3.0
    assert (statuses["bad"].state, statuses["bad"].exit_code) == (BatchState.DONE, 3)
    assert (statuses["hog"].state, statuses["hog"].error_class) == (
        BatchState.FAILED,
        "OUT_OF_MEMORY",
    )
    assert statuses["gone"].error_class == "CANCELLED"
    assert (statuses["retried"].batch_id, statuses["retried"].state) == ("41.0", BatchState.QUEUED)
    assert statuses["waiting"].state is BatchState.QUEUED


def test_plugin_reads_status_from_the_event_log(tmp_path: Path) -> None:
    plugin = load_plugin("htcondor", {"status_source": "event_log"}, tmp_path)
    log = EventLogWriter(plugin.event_log)  # type: ignore[attr-defined]
    log.submit(7, 0, "a")
    log.submit(7, 1, "b")
    log.execute(7, 0)
    log.terminated(7, 0, 2)

    status = plugin.query(["a", "b", "never"])

    assert (status["a"].state, status["a"].exit_code) == (BatchState.DONE, 2)
    assert status["b"].state is BatchState.QUEUED
    assert status["never"].state is BatchState.LOST
    assert plugin.find_submitted(["a", "b", "never"]) == {"a": "7.0", "b": "7.1"}


def schedd_reason() -> str | None:
    try:
        htcondor2.Schedd()
        return None
    except Exception as exc:  # noqa: BLE001
        return f"no HTCondor schedd reachable (condor_schedd/condor_master not installed?): {exc}"


def test_without_schedd_the_plugin_says_unavailable(tmp_path: Path) -> None:
    if schedd_reason() is None:
        pytest.skip("a schedd is reachable here")
    plugin = load_plugin("htcondor", {}, tmp_path)
    with pytest.raises(BatchUnavailable):
        plugin.query(["x"])


def test_live_schedd_submit_query_remove(tmp_path: Path) -> None:
    reason = schedd_reason()
    if reason:
        pytest.skip(reason)
    plugin = load_plugin("htcondor", {}, tmp_path)
    jobs = [
        BatchJob(f"live-{i}", ["/bin/sh", "-c", f"exit {i}"], tmp_path / f"l{i}", memory_mb=50)
        for i in range(3)
    ]
    jobs.append(BatchJob("live-long", ["/bin/sleep", "300"], tmp_path / "long", memory_mb=50))
    accepted = plugin.submit(jobs)
    assert len(accepted) == 4
    assert plugin.find_submitted(accepted) == accepted
    plugin.kill(["live-long"])
    status = wait_final(plugin, accepted, timeout=120, poll=1.0)
    assert {f"live-{i}": status[f"live-{i}"].exit_code for i in range(3)} == {
        "live-0": 0,
        "live-1": 1,
        "live-2": 2,
    }
    assert status["live-long"].error_class == "CANCELLED"
