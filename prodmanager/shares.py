"""Fair shares: how many of the jobs one acquire hands out go to each group of requests (jobs,
not allocations: an allocation may hold several, `pm_allocation.n_jobs`).

Groups have configured weights (`prodmanager serve --share prod=70 --share test=30`; groups not
named weigh `DEFAULT_WEIGHT`). Among the groups with work to hand out, each should hold
`weight / sum(weights)` of all jobs leased; an acquire of n gives each group its
shortfall against that target (largest remainders first), so leases drift towards the shares
whatever the groups held before. Priorities order requests within a group, as before.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

DEFAULT_WEIGHT = 1.0


def parse(items: Iterable[str]) -> dict[str, float]:
    """`GROUP=WEIGHT` items as a mapping; ValueError naming a bad item."""
    shares: dict[str, float] = {}
    for item in items:
        name, _, weight = item.partition("=")
        try:
            value = float(weight)
        except ValueError:
            raise ValueError(f"--share {item!r}: expected GROUP=WEIGHT with a number") from None
        if not name or not math.isfinite(value) or value <= 0:
            raise ValueError(f"--share {item!r}: expected GROUP=WEIGHT with a weight above 0")
        shares[name] = value
    return shares


def quotas(jobs: int, held: Mapping[str, int], groups: Iterable[str], shares: Mapping[str, float]) -> dict[str, int]:
    """Jobs each of `groups` (those with work) gets from an acquire of `jobs`."""
    active = sorted(set(groups))
    if not active or jobs <= 0:
        return {}
    weights = {g: shares.get(g, DEFAULT_WEIGHT) for g in active}
    total = sum(held.get(g, 0) for g in active) + jobs
    want = {g: max(0.0, total * weights[g] / sum(weights.values()) - held.get(g, 0)) for g in active}
    scale = min(1.0, jobs / sum(want.values())) if sum(want.values()) > 0 else 0.0
    exact = {g: want[g] * scale for g in active}
    out = {g: math.floor(v) for g, v in exact.items()}
    for g in sorted(active, key=lambda g: exact[g] - out[g], reverse=True)[: jobs - sum(out.values())]:
        out[g] += 1
    return out
