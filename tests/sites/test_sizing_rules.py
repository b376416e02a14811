"""Automatic job sizing rules: the scouts' verdict, the estimate, the even cut; and the spec."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from pydantic import ValidationError

from prodagent.jobs import sizing
from prodmanager.splitter import cut
from prodrequest.spec import EventSplit, MonteCarloWorkflow


def scout(state: str, retry: int = 0, error_class: str | None = None) -> SimpleNamespace:
    return SimpleNamespace(state=state, retry=retry, error_class=error_class)


def test_most_scouts_failing_pauses_with_the_reason() -> None:
    verdict, why = sizing.scout_verdict([scout("cooloff", 1, "PayloadError"), scout("jobfailed", 0, "PayloadError"),
                                         scout("exhausted", 3, "OutOfMemory"), scout("success")])
    assert verdict == sizing.PAUSED and why is not None
    assert "3 of 4 scout jobs failed" in why and "2 x PayloadError" in why and "1 x OutOfMemory" in why
    assert sizing.scout_verdict([scout("success"), scout("running")]) == (sizing.SCOUTING, None)
    assert sizing.scout_verdict([scout("success"), scout("cleaned"), scout("success", 1)])[0] == sizing.SIZED


def test_estimate_and_even_cut() -> None:
    jobs = [SimpleNamespace(n_events=10, wall_s=10 * c, cpu_s=9 * c, max_rss_mb=m, output_bytes=1000, scout=True)
            for c, m in ((0.5, 400), (0.6, 500), (0.5, 450), (0.55, 480))]
    est = sizing.estimate(jobs, target_job_s=105, max_events=1000)
    assert est is not None and est.events_per_job == 200  # 105 s / median 0.525 s per event
    assert est.memory_mb > 500 and est.figures["p75_output_bytes_per_event"] == 100
    assert sizing.estimate([], 100, 10) is None
    parts = sizing.even_cut(100, 1150, 200)
    assert sum(n for _f, n in parts) == 1050 and len(parts) == 5 and all(200 <= n <= 210 for _f, n in parts)
    assert [f for f, _n in parts] == [100, 310, 520, 730, 940]


def test_auto_in_the_spec_and_the_splitter() -> None:
    with pytest.raises(ValidationError, match="target_job_s and time_per_event_s"):
        EventSplit(total=100, per_job="auto")
    doc = {"kind": "montecarlo", "name": "auto-req", "payload": {"transformation": "pythia", "version": "8.317"},
           "events": {"total": 1000, "per_job": "auto", "target_job_s": 100, "time_per_event_s": 1.0},
           "output": {"dataset": "/A/auto/GEN", "tier": "GEN"}}
    workflow = MonteCarloWorkflow.model_validate(doc)
    rows = cut(workflow, request_id=1, run_number=1, now=0.0)
    # Allocations of 4 guessed jobs (400 events); seed and index are each allocation's first event.
    assert [(r["first_event"], r["n_events"], r["job_index"]) for r in rows] == [(0, 400, 0), (400, 400, 400),
                                                                                 (800, 200, 800)]
    assert [r["seed"] - rows[0]["seed"] for r in rows] == [0, 400, 800]
