"""Placement: allowed sites only, room used up, banned sites skipped, failing sites get less."""

from __future__ import annotations

from collections import Counter
from types import SimpleNamespace

from prodagent.jobs.placement import NO_LISTS, place, site_lists


def jobs(n: int, request: str = "r") -> list[SimpleNamespace]:
    return [SimpleNamespace(id=i, job_type="production", request_id=request) for i in range(n)]


def test_white_and_black_lists_and_room() -> None:
    lists = {"w": site_lists({"sites": {"whitelist": ["A"]}}), "b": site_lists({"sites": {"blacklist": ["A"]}})}
    room = {"A": 3, "B": 10}
    chosen = place(jobs(5, "w") + [SimpleNamespace(id=10 + i, job_type="production", request_id="b")
                                   for i in range(4)], room, {}, {}, lambda j: lists[j.request_id])
    by_request = Counter((j.request_id, site) for j, site in chosen)
    assert by_request == {("w", "A"): 3, ("b", "B"): 4}  # two whitelisted jobs wait for room at A
    assert room == {"A": 0, "B": 6}


def test_banned_sites_get_nothing_and_failing_sites_less() -> None:
    room = {"good": 50, "flaky": 50, "banned": 50}
    chosen = place(jobs(60), room, {"banned": "banned"}, {"good": 0.95, "flaky": 0.3}, lambda j: NO_LISTS)
    sites = Counter(site for _j, site in chosen)
    assert "banned" not in sites and sites["good"] > 2 * sites["flaky"] and sum(sites.values()) == 60
