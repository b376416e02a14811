"""Site circuit breakers on a real database: the ban share cap, forcing, black-hole nodes."""

from __future__ import annotations

import time

import pytest

from prodagent.db.engine import make_engine
from prodagent.db.migrate import upgrade
from prodagent.errors import IllegalTransition
from prodagent.jobs import site_states, site_store
from prodagent.jobs.site_health import SiteBreaker, SiteHealthSettings, force

SITES = ["s1", "s2", "s3", "s4"]


def results(site: str, n: int, ok: bool, fault: bool, node: str = "n1", wall_s: float = 100.0) -> list[dict]:
    now = time.time()
    return [{"agent": "a", "site": site, "node": node, "at": now, "ok": ok, "site_fault": fault, "wall_s": wall_s}
            for _ in range(n)]


def test_state_table_has_one_path_through_ban() -> None:
    site_states.check("normal", "degraded")
    site_states.check("banned", "probing")
    with pytest.raises(IllegalTransition):
        site_states.check("banned", "normal")  # a banned site comes back only through probing
    site_states.check("banned", "normal", forced=True)  # an operator may force any state
    with pytest.raises(IllegalTransition):
        site_states.check("normal", "bogus", forced=True)


def test_never_more_than_the_allowed_share_banned_payload_errors_do_not_count(db_url: str) -> None:
    upgrade(db_url)
    engine = make_engine(db_url)
    breaker = SiteBreaker("a", SiteHealthSettings(min_jobs=3, max_banned_share=0.5, ban_s=3600))
    with engine.begin() as conn:
        for site in SITES[:3]:  # three sites fail everything at the site; at most 2 of 4 may be banned
            site_store.record_results(conn, results(site, 5, ok=False, fault=True))
        site_store.record_results(conn, results("s4", 8, ok=False, fault=False))  # the payload's own errors
        changes = breaker.evaluate(conn, SITES)
        health = site_store.health(conn, "a")
    states = {s: r.state for s, r in health.items()}
    assert sorted(states.values()) == ["banned", "banned", "degraded", "normal"], changes
    assert states["s4"] == "normal"
    with engine.begin() as conn:  # evaluated again: the cap still holds
        breaker.evaluate(conn, SITES)
        assert sum(r.state == "banned" for r in site_store.health(conn, "a").values()) == 2
        ban = [e for e in site_store.events(conn, "a") if e.to_state == "banned"]
    assert len(ban) == 2 and all('"site_faults": 5' in e.figures and '"max_banned": 2' in e.figures for e in ban)
    engine.dispose()


def test_forced_state_holds_until_released_and_nodes_are_excluded(db_url: str) -> None:
    upgrade(db_url)
    engine = make_engine(db_url)
    breaker = SiteBreaker("a", SiteHealthSettings(min_jobs=3, ban_s=0, node_failures=3, node_quick_s=5))
    with engine.begin() as conn:
        breaker.evaluate(conn, SITES)
        force(conn, "a", "s1", "banned", "downtime")
        site_store.record_results(conn, results("s2", 3, ok=False, fault=False, node="bad", wall_s=1.0))
        site_store.record_results(conn, results("s2", 5, ok=True, fault=False, node="fine"))
        # a busy node whose quick failures are a small share of its attempts is no black hole
        site_store.record_results(conn, results("s2", 4, ok=False, fault=False, node="busy", wall_s=1.0))
        site_store.record_results(conn, results("s2", 76, ok=True, fault=False, node="busy"))
        breaker.evaluate(conn, SITES)  # ban_s=0 would probe a banned site at once: not a forced one
        assert site_store.health(conn, "a")["s1"].state == "banned"
        assert site_store.excluded_nodes(conn, "a", time.time()) == {"s2": ("bad",)}
        assert site_store.health(conn, "a")["s2"].state == "normal"  # the site itself runs on
        force(conn, "a", "s1", None, "downtime over")
        breaker.evaluate(conn, SITES)
        assert site_store.health(conn, "a")["s1"].state == "probing"
        reasons = [e.reason for e in site_store.events(conn, "a", "s1")]
    assert any("forced by the operator: downtime" in r for r in reasons)
    assert any("released by the operator" in r for r in reasons)
    engine.dispose()
