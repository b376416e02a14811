"""MergeSensor: the grouping policy, merge jobs from ready groups, acceptance and refusal, remerge.

The policy tests are pure. The others run on SQLite and MariaDB with real Pythia files and run
the merge jobs MergeSensor creates with the real job wrapper and merge transformation.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
import uproot

from prodagent.components.error_handler import ErrorHandler
from prodagent.components.job_creator import JobCreator
from prodagent.components.merge_sensor import MergeSensor
from prodagent.db.schema import pa_file_parent
from prodagent.jobs import states, store
from prodagent.jobs.layout import Layout
from prodagent.jobs.merging import Candidate, MergePolicy, plan_merges, remerge
from prodagent.payload.jobspec import read_spec, write_spec
from prodrequest.spec import GiB
from tests.components.merge_env import DATASET, MergeWorld, Produced, produced_files  # noqa: F401

NOW = 1_000_000.0


def policy(min_size: int = 100, max_size: int = 250, max_events: int = 1000, max_wait: float = 600,
           enabled: bool = True) -> MergePolicy:
    return MergePolicy(enabled, min_size, max_size, max_events, max_wait)


def files(*sizes: int, events: int = 10, age: float = 0.0) -> list[Candidate]:
    return [Candidate(i + 1, s, events, NOW - age) for i, s in enumerate(sizes)]


# -- the grouping policy -------------------------------------------------------------------------

def test_groups_reach_min_size_and_never_go_above_max_size() -> None:
    groups = plan_merges(files(60, 60, 60, 60, 60, 50), policy(), NOW, idle=False)
    # 4 x 60 = 240 <= max 250 (a fifth would make 300: closed); 60+50 = 110 reached min 100.
    assert [g.ids for g in groups] == [[1, 2, 3, 4], [5, 6]]
    assert all(g.size <= 250 for g in groups)
    # Below min size and not waited: the open group waits for more files.
    assert plan_merges(files(40, 50), policy(), NOW, idle=False) == []
    assert [g.ids for g in plan_merges(files(40, 50, 20), policy(), NOW, idle=False)] == [[1, 2, 3]]


def test_max_events_bounds_and_completes_groups() -> None:
    small = policy(min_size=10**6, max_size=10**9, max_events=30)
    groups = plan_merges(files(1, 1, 1, 1, 1, 1, 1, events=10), small, NOW, idle=False)
    # Groups of exactly max events are ready; the seventh file waits alone.
    assert [g.ids for g in groups] == [[1, 2, 3], [4, 5, 6]]
    assert [g.events for g in groups] == [30, 30]
    uneven = [Candidate(1, 1, 20, NOW), Candidate(2, 1, 20, NOW), Candidate(3, 1, 5, NOW)]
    # 20+20 > 30: the first group is closed at 20 events (full), never above max events.
    assert [g.ids for g in plan_merges(uneven, small, NOW, idle=False)] == [[1]]


def test_open_group_is_merged_after_max_wait() -> None:
    assert plan_merges(files(10, 10, age=599), policy(), NOW, idle=False) == []
    (group,) = plan_merges(files(10, 10, age=600), policy(), NOW, idle=False)
    assert group.ids == [1, 2] and "waited" in group.reason


def test_idle_request_merges_its_last_files_at_once() -> None:
    (group,) = plan_merges(files(10, 20), policy(), NOW, idle=True)
    assert group.ids == [1, 2] and "no live production job" in group.reason


def test_a_file_above_max_size_or_events_is_merged_alone() -> None:
    groups = plan_merges(files(50, 300, 60), policy(), NOW, idle=False)
    assert [g.ids for g in groups] == [[1, 3], [2]]  # 50+60 reached min; 300 alone
    big = [Candidate(1, 10, 5000, NOW), Candidate(2, 10, 10, NOW)]
    assert [g.ids for g in plan_merges(big, policy(), NOW, idle=False)] == [[1]]


def test_disabled_merge_never_groups() -> None:
    off = policy(enabled=False)
    assert plan_merges(files(60, 60, 300, age=10**6), off, NOW, idle=True) == []


def test_policy_from_workflow_takes_the_request_schema_defaults() -> None:
    assert MergePolicy.from_workflow({}) == MergePolicy(True, 2 * GiB, 4 * GiB, 100_000_000, 86_400.0)
    given = MergePolicy.from_workflow({"merge": {"enabled": False, "max_events": 7}})
    assert not given.enabled and given.max_events == 7 and given.min_size_bytes == 2 * GiB


# -- merge jobs on a real database ----------------------------------------------------------------


def test_ready_groups_become_merge_jobs_and_the_last_files_wait_for_an_idle_request(
    db_url: str, tmp_path: Path, produced_files: list[Produced],  # noqa: F811
) -> None:
    sizes = [p.report.outputs[0].size for p in produced_files[:3]]
    world = MergeWorld(tmp_path, db_url, {"min_size_bytes": sizes[0] + sizes[1],
                                          "max_size_bytes": sizes[0] + sizes[1] + sizes[2] // 2})
    try:
        live = world.add_running_job()
        world.add_production(produced_files[:3])
        sensor = world.component(MergeSensor)
        inputs = world.files(kind="unmerged")
        out = world.call(sensor.tick)
        (merge,) = world.jobs("merge")
        assert [(m.msg_type, m.payload) for m in out] == [("JobCreated", {"job_ids": [merge.id]})]
        assert merge.name == f"mt-merge-d{world.dataset_id}-{inputs[0].id}"
        assert (merge.request_id, merge.dataset_id, merge.state, merge.max_retries) == ("42", world.dataset_id, "created", 2)
        assert (merge.memory_mb, merge.time_s, merge.n_events) == (1500, 600, inputs[0].events + inputs[1].events)
        assert [(f.state, f.merge_job_id) for f in world.files(kind="unmerged")] == [
            ("merging", merge.id), ("merging", merge.id), ("new", None)]
        spec = read_spec(Layout.attempt_dir(merge.workdir, 0))
        assert spec.job_type == "merge" and spec.inputs == [inputs[0].pfn, inputs[1].pfn]
        assert spec.input_events == [inputs[0].events, inputs[1].events]
        assert spec.output_path == str(world.layout.merged_path(DATASET, merge.name))
        # Again: nothing new (the third file is below min size, the request still has live work).
        assert world.call(sensor.tick) == [] and len(world.jobs("merge")) == 1
        # The last production job ends: its JobSuccess merges the remaining file at once.
        world.tx(lambda conn: store.transition(conn, [live], states.SUCCESS, "test"))
        out = world.call(sensor.on_success, {"job_ids": [live]})
        last = world.jobs("merge")[-1]
        assert [m.payload for m in out] == [{"job_ids": [last.id]}] and last.id != merge.id
        assert world.files(kind="unmerged")[-1].merge_job_id == last.id
        assert [m["job_ids"] for m in world.messages("JobCreated")] == [[merge.id], [last.id]]
        assert world.messages("JobCreated", component="JobSubmitter")  # the submit path gets them
    finally:
        world.close()


@pytest.mark.parametrize("world", [{"enabled": False, "max_wait_s": 0}], indirect=True)
def test_disabled_merge_leaves_files_new(world: MergeWorld, produced_files: list[Produced]) -> None:  # noqa: F811
    world.add_production(produced_files[:2], age_s=10**5)
    sensor = world.component(MergeSensor)
    assert world.call(sensor.tick) == []
    assert world.jobs("merge") == []
    assert [f.state for f in world.files()] == ["new", "new"]


def test_merge_accepted(world: MergeWorld, produced_files: list[Produced]) -> None:  # noqa: F811
    prod = world.add_production(produced_files[:3])
    sensor = world.component(MergeSensor)
    world.call(sensor.on_success, {"job_ids": prod})  # idle request: all three at once
    (merge,) = world.jobs("merge")
    inputs = world.files(kind="unmerged")
    world.run_merge(merge.id)
    out = world.call(sensor.on_success, {"job_ids": [merge.id]})
    (merged,) = world.files(kind="merged")
    total = sum(f.events for f in inputs)
    assert total == 160
    assert (merged.state, merged.events, merged.job_id) == ("final", total, merge.id)
    assert merged.lfn == Layout.lfn(DATASET, "merged", merge.name)
    assert merged.pfn == str(world.layout.merged_path(DATASET, merge.name))
    assert merged.size == Path(merged.pfn).stat().st_size
    with uproot.open(merged.pfn) as f:
        assert f["events"].num_entries == total
    parents = world.tx(lambda conn: sorted(conn.execute(
        sa.select(pa_file_parent.c.parent_id).where(pa_file_parent.c.file_id == merged.id)).scalars()))
    assert parents == [f.id for f in inputs]
    assert [f.state for f in world.files(kind="unmerged")] == ["merged"] * 3
    accepted = {"merge_job_id": merge.id, "dataset_id": world.dataset_id, "file_id": merged.id}
    assert [(m.msg_type, m.payload) for m in out] == [("MergeAccepted", accepted)]
    assert world.messages("MergeAccepted", component="Cleanup") == [accepted]
    # A second delivery changes nothing and publishes nothing.
    before = (world.files(), world.jobs())
    assert world.call(sensor.on_success, {"job_ids": [merge.id]}) == []
    assert (world.files(), world.jobs()) == before


def test_merge_with_wrong_event_count_is_refused_and_retried_with_the_same_inputs(
    world: MergeWorld, produced_files: list[Produced],  # noqa: F811
) -> None:
    prod = world.add_production(produced_files[:3])
    sensor = world.component(MergeSensor)
    world.call(sensor.on_success, {"job_ids": prod})
    (merge,) = world.jobs("merge")
    inputs = world.files(kind="unmerged")
    # A merge that left out its last input: the wrapper is content, the event count is not.
    attempt = Layout.attempt_dir(merge.workdir, 0)
    spec = read_spec(attempt)
    write_spec(attempt, spec.model_copy(update={"inputs": spec.inputs[:2], "input_events": spec.input_events[:2]}))
    report = world.run_merge(merge.id)
    assert report.ok and report.outputs[0].events == inputs[0].events + inputs[1].events
    out = world.call(sensor.on_success, {"job_ids": [merge.id]})
    refused = world.job(merge.id)
    assert [(m.msg_type, m.payload) for m in out] == [("JobFailed", {"job_ids": [merge.id]})]
    assert world.messages("JobFailed", component="ErrorHandler") == [{"job_ids": [merge.id]}]
    assert (refused.state, refused.error_class) == ("jobfailed", "MergeRefused")
    assert "holds 110 events, its inputs hold 160" in refused.error_reason
    assert world.tx(lambda conn: store.history(conn, merge.id))[-1].reason.startswith("output refused on acceptance")
    assert world.files(kind="merged") == []
    assert not Path(report.outputs[0].path).exists()  # the bad merged file is gone
    kept = world.files(kind="unmerged")
    assert [(f.state, f.merge_job_id) for f in kept] == [("merging", merge.id)] * 3
    assert all(Path(f.pfn).is_file() for f in kept)
    # Second delivery: nothing changes, nothing is published.
    assert world.call(sensor.on_success, {"job_ids": [merge.id]}) == []
    assert world.job(merge.id).state == "jobfailed" and len(world.messages("JobFailed")) == 1
    # The ErrorHandler retries it; the retry's job.json holds the same three inputs.
    retry = world.call(world.component(ErrorHandler).on_failed, {"job_ids": [merge.id]})
    assert [m.msg_type for m in retry] == ["RetryJob"] and world.job(merge.id).state == "cooloff"
    world.call(world.component(JobCreator).on_retry, retry[0].payload)
    again = world.job(merge.id)
    assert (again.state, again.retry) == ("created", 1)
    assert read_spec(Layout.attempt_dir(again.workdir, 1)).inputs == [f.pfn for f in inputs]
    world.run_merge(merge.id)
    out = world.call(sensor.on_success, {"job_ids": [merge.id]})
    assert [m.msg_type for m in out] == ["MergeAccepted"]
    assert world.files(kind="merged")[0].events == 160


def test_remerge_gives_the_inputs_of_failed_merges_back(world: MergeWorld, produced_files: list[Produced]) -> None:  # noqa: F811
    prod = world.add_production(produced_files[:2])
    sensor = world.component(MergeSensor)
    world.call(sensor.on_success, {"job_ids": prod})
    (failed,) = world.jobs("merge")

    def exhaust(conn: sa.Connection) -> None:
        for to in (states.SUBMITTED, states.JOBFAILED, states.EXHAUSTED):
            store.transition(conn, [failed.id], to, "test")
    world.tx(exhaust)
    assert world.call(sensor.tick) == []  # inputs belong to the exhausted merge until remerge
    done = world.tx(lambda conn: remerge(conn, "mt", world.dataset_id))
    assert (done.merge_job_ids, done.files) == ([failed.id], 2)
    assert world.job(failed.id).state == "killed"  # cannot be resubmitted without inputs
    assert [(f.state, f.merge_job_id) for f in world.files()] == [("new", None)] * 2
    out = world.call(sensor.tick)
    fresh = world.jobs("merge")[-1]
    assert [m.payload for m in out] == [{"job_ids": [fresh.id]}]
    assert fresh.name == failed.name + "-2"
    assert [f.merge_job_id for f in world.files()] == [fresh.id] * 2
    # A merge job still live is not touched.
    again = world.tx(lambda conn: remerge(conn, "mt", world.dataset_id))
    assert (again.merge_job_ids, again.files) == ([failed.id], 0)
    assert world.job(fresh.id).state == "created"
