"""Where each job goes: an allowed site with room, weighted by breaker state and recent success.

A job may go to a site its request allows (`sites.whitelist`, `sites.blacklist`); among those
with room left, it goes where `room x state weight x recent success ratio` is largest, so free
slots spread over healthy sites and a site that keeps failing gets less even before its breaker
opens. Merge jobs go first: they free disk.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from prodagent.jobs import site_states

SiteLists = tuple[frozenset[str], frozenset[str]]  # (whitelist, blacklist)
NO_LISTS: SiteLists = (frozenset(), frozenset())


def allowed(lists: SiteLists, site: str) -> bool:
    white, black = lists
    return site not in black and (not white or site in white)


def site_lists(workflow: dict[str, Any] | None) -> SiteLists:
    """A request's (whitelist, blacklist) from its workflow document."""
    sites = (workflow or {}).get("sites") or {}
    return frozenset(sites.get("whitelist") or ()), frozenset(sites.get("blacklist") or ())


def place(jobs: Iterable[Any], room: dict[str, int], health: dict[str, str], success: dict[str, float],
          lists_of: Callable[[Any], SiteLists]) -> list[tuple[Any, str]]:
    """(job, site) for every job that fits; `room` is used up as jobs are placed."""
    chosen: list[tuple[Any, str]] = []
    for job in sorted(jobs, key=lambda j: (j.job_type != "merge", j.id)):
        lists = lists_of(job)
        best, score = None, 0.0
        for site, free in room.items():
            if free <= 0 or not allowed(lists, site):
                continue
            value = free * site_states.WEIGHT[health.get(site, site_states.NORMAL)] * success.get(site, 1.0)
            if value > score:
                best, score = site, value
        if best is None:
            if not any(free > 0 for free in room.values()):
                break
            continue  # no allowed site has room: the job waits
        room[best] -= 1
        chosen.append((job, best))
    return chosen
