"""Automatic job sizing (`events.per_job: auto`): scouts first, then jobs of the target length.

The first allocation of a request on this agent gets `events.scouts` small scout jobs (a tenth
of a guessed job each; placement spreads them over sites) and nothing else is cut until they
end. If more than half of the scouts fail, the request's sizing pauses with the scouts' errors
and no more jobs are cut. Otherwise the estimate (`FORMULA`) sets events per job, memory and
time for every job cut from then on, and it is recomputed from every job that succeeds, so work
not yet cut follows the latest figures.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from prodagent.jobs import states

SCOUTING, SIZED, PAUSED = "scouting", "sized", "paused"
SCOUT_SHARE = 0.1  # a scout runs this share of a guessed job
FORMULA = ("events_per_job = round(target_job_s / median(wall_s / events)); "
           "memory_mb = ceil(max(p75(peak_rss_mb) * 1.1, max(peak_rss_mb) * 1.05 + 2 * stdev(peak_rss_mb))); "
           "time_s = ceil(events_per_job * p95(wall_s / events) * 1.5 + 60)")


@dataclass(frozen=True)
class Estimate:
    events_per_job: int
    memory_mb: int
    time_s: int
    figures: dict[str, Any]


def scout_events(guessed_events_per_job: int) -> int:
    return max(1, math.floor(guessed_events_per_job * SCOUT_SHARE))


def percentile(values: Sequence[float], share: float) -> float:
    """Nearest-rank percentile (share in 0..1) of a non-empty sequence."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(share * len(ordered)) - 1))]


def estimate(jobs: Sequence[Any], target_job_s: float, max_events: int) -> Estimate | None:
    """The estimate from finished jobs (n_events, wall_s, cpu_s, max_rss_mb, output_bytes); None if none."""
    usable = [j for j in jobs if j.n_events and j.wall_s is not None]
    if not usable:
        return None
    wall = [j.wall_s / j.n_events for j in usable]
    cpu = [(j.cpu_s or 0.0) / j.n_events for j in usable]
    rss = [j.max_rss_mb for j in usable if j.max_rss_mb is not None] or [0.0]
    out = [(j.output_bytes or 0) / j.n_events for j in usable]
    per_event = statistics.median(wall)
    events = max(1, min(max_events, round(target_job_s / per_event) if per_event > 0 else max_events))
    spread = statistics.pstdev(rss) if len(rss) > 1 else 0.0
    memory = math.ceil(max(percentile(rss, 0.75) * 1.1, max(rss) * 1.05 + 2 * spread, 1.0))
    time_s = math.ceil(events * percentile(wall, 0.95) * 1.5 + 60)
    figures = {
        "jobs_measured": len(usable), "scouts_measured": sum(1 for j in usable if getattr(j, "scout", False)),
        "target_job_s": target_job_s, "median_wall_s_per_event": round(per_event, 6),
        "p95_wall_s_per_event": round(percentile(wall, 0.95), 6), "p95_cpu_s_per_event": round(percentile(cpu, 0.95), 6),
        "p75_peak_rss_mb": round(percentile(rss, 0.75), 1), "max_peak_rss_mb": round(max(rss), 1),
        "stdev_peak_rss_mb": round(spread, 1),
        "p75_output_bytes_per_event": round(percentile(out, 0.75), 1),
        "events_per_job": events, "memory_mb": memory, "time_s": time_s,
    }
    return Estimate(events, memory, time_s, figures)


def scout_verdict(scouts: Sequence[Any]) -> tuple[str, str | None]:
    """(SCOUTING | SIZED | PAUSED, reason): a scout fails if any attempt of it failed."""
    failed = [s for s in scouts if s.retry > 0 or s.state in states.FAILED | states.NEEDS_OPERATOR | {states.COOLOFF}]
    good = [s for s in scouts if s.state in states.DONE_OK and s.retry == 0]
    if scouts and len(failed) * 2 > len(scouts):
        classes = Counter(s.error_class or "unknown" for s in failed)
        why = ", ".join(f"{n} x {c}" for c, n in classes.most_common())
        return PAUSED, f"{len(failed)} of {len(scouts)} scout jobs failed ({why}): sizing paused"
    if good and len(good) + len(failed) == len(scouts):
        return SIZED, None
    return SCOUTING, None


def even_cut(first: int, end: int, events_per_job: int) -> list[tuple[int, int]]:
    """[first, end) in (first_event, n_events) jobs of about `events_per_job`, none much shorter."""
    total = end - first
    if total <= 0:
        return []
    n = max(1, round(total / events_per_job))
    base, extra = divmod(total, n)
    out, at = [], first
    for i in range(n):
        size = base + (1 if i < extra else 0)
        out.append((at, size))
        at += size
    return out
