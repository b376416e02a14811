"""Automatic job sizing pushed by agents, over real HTTP (ProdManager on SQLite and MariaDB):
ProdMgrInterface pushes a `per_job: auto` request's estimate when it changed, `prodrequest show`
prints it with the figures and the formula (so does the request page); hostile pushes (oversized, wrong types, another
agent's or another request's) are refused naming the problem, and store nothing."""

from __future__ import annotations

import json
import logging
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from prodagent.components.prodmgr_interface import ProdMgrInterface
from prodagent.jobs import sizing, sizing_store
from prodmanager.client import ProdManagerClient
from prodmanager.db.schema import sizing as pm_sizing
from prodmanager.models import RequestSizing
from prodrequest.cli import main as prodrequest_cli
from tests.prodmanager.conftest import AGENT, Server, mc_workflow, submit
from tests.prodmanager.test_hostile_reports import snapshot
from tests.prodmanager.test_web_http import browser

AUTO = {"total": 800, "per_job": "auto", "target_job_s": 10, "time_per_event_s": 0.1, "scouts": 2}


def auto_workflow(name: str) -> dict[str, Any]:
    return mc_workflow(name, 800, 100, events=AUTO)


def measured(n: int, s_per_event: float) -> list[Any]:
    """Finished jobs as the agent's sizing store reads them."""
    return [SimpleNamespace(n_events=10, wall_s=10 * s_per_event * (1 + i / 100), cpu_s=1.0,
                            max_rss_mb=400.0 + i, output_bytes=1000, scout=i < 2) for i in range(n)]


def size(pmi: ProdMgrInterface, request_id: int, jobs: list[Any]) -> sizing.Estimate:
    """Record a sized estimate of the request on the agent, as JobCreator does."""
    found = sizing.estimate(jobs, target_job_s=10, max_events=400)
    assert found is not None

    def work(conn: sa.Connection) -> None:
        sizing_store.start(conn, AGENT, str(request_id), sizing.SCOUTING, {"scouts": 2}, sizing.FORMULA)
        sizing_store.update(conn, AGENT, str(request_id), {"scouts": 2, **found.figures}, state=sizing.SIZED,
                            events_per_job=found.events_per_job, memory_mb=found.memory_mb, time_s=found.time_s)

    pmi.service.tx.run(work)
    return found


def stored(server: Server) -> list[Any]:
    return server.env.db.read(lambda conn: conn.execute(sa.select(pm_sizing).order_by(pm_sizing.c.request_id)).all())


def show(server: Server, request_id: int, *args: str) -> str:
    result = CliRunner(env={"COLUMNS": "200"}).invoke(
        prodrequest_cli, ["--url", server.url, "--token", server.env.tokens["alice"], "show", str(request_id), *args])
    assert result.exit_code == 0, result.output
    return result.output


def cells(text: str) -> list[list[str]]:
    """The rows of the sizing table `prodrequest show` prints, as [key, value]."""
    rows = text.split("automatic job sizing", 1)[1].splitlines()
    return [[c.strip() for c in line.split("│")[1:3]] for line in rows if line.count("│") == 3]


def formula_of(table: list[list[str]]) -> list[str]:
    """The formula's lines: the `formula` row and the unnamed rows after it."""
    start = [k for k, _ in table].index("formula")
    lines = [table[start][1]]
    for key, value in table[start + 1:]:
        if key:
            break
        lines.append(value)
    return lines



def test_pushed_sizing_is_shown_with_its_figures_and_formula(
        interface: ProdMgrInterface, server: Server, caplog: pytest.LogCaptureFixture) -> None:
    rid = submit(server.env, "alice", auto_workflow("auto"))
    interface.tick()  # acquires the request's allocations
    found = size(interface, rid, measured(6, 0.05))
    interface.service.tx.run(lambda conn: sizing_store.start(  # a request this agent holds nothing of
        conn, AGENT, "987654", sizing.PAUSED, {}, sizing.FORMULA))
    with caplog.at_level(logging.ERROR):
        interface.tick()
    [row] = stored(server)  # the foreign one refused, the good one not held back by it
    assert (row.request_id, row.agent, row.state, row.events_per_job) == (rid, AGENT, "sized", found.events_per_job)
    assert any("987654" in r.getMessage() and "refused" in r.getMessage() for r in caplog.records)

    table = cells(show(server, rid))
    assert ["agent a1", "sized"] in [[k, v.split()[0]] for k, v in table]
    assert ["events per job", str(found.events_per_job)] in table
    assert ["memory", f"{found.memory_mb} MB"] in table and ["time", f"{found.time_s} s"] in table
    assert ["based on", "6 job(s) measured (2 scout(s))"] in table
    for name in ("median_wall_s_per_event", "p95_wall_s_per_event", "max_peak_rss_mb", "p75_peak_rss_mb"):
        assert [name, str(found.figures[name])] in table
    assert formula_of(table) == sizing.FORMULA.split("; ")  # every expression, as the agent declares it
    detail = json.loads(show(server, rid, "--json"))
    [pushed] = detail["sizing"]
    assert pushed["formula"] == sizing.FORMULA and pushed["figures"]["jobs_measured"] == 6
    assert pushed["figures"]["scouts"] == 2  # the scouting figures go along

    caplog.clear()
    interface.service.tx.run(lambda conn: sizing_store.update(conn, AGENT, str(rid)))  # recomputed, the same
    with caplog.at_level(logging.ERROR):
        interface.tick()  # nothing changed but the estimate's time: nothing sent
    assert stored(server)[0].received_at == row.received_at
    assert not any("987654" in r.getMessage() for r in caplog.records)  # a refusal is not repeated

    later = size(interface, rid, measured(12, 0.08))  # more jobs measured, slower
    interface.tick()
    [again] = stored(server)
    assert again.received_at > row.received_at and again.events_per_job == later.events_per_job
    assert json.loads(again.figures)["jobs_measured"] == 12
    assert ["based on", "12 job(s) measured (2 scout(s))"] in cells(show(server, rid))


def test_a_fixed_size_request_shows_no_sizing(server: Server) -> None:
    rid = submit(server.env, "alice", mc_workflow("fixed", 100, 100))
    assert "automatic job sizing" not in show(server, rid)
    assert json.loads(show(server, rid, "--json"))["sizing"] == []


@pytest.fixture
def held(server: Server) -> tuple[Server, dict[str, int]]:
    """a1 (token agent1) holds allocations of alice's auto and fixed requests; bob's auto request
    is held by nobody (paused: never handed out)."""
    ids = {"auto": submit(server.env, "alice", auto_workflow("held-auto")),
           "fixed": submit(server.env, "alice", mc_workflow("held-fixed", 100, 100))}
    agent = ProdManagerClient(server.url, server.env.tokens["agent1"])
    agent.register_agent("a1", sites=["TEST"], capacity=10)
    agent.register_agent("a2-of-agent1", sites=["TEST"], capacity=1)
    ProdManagerClient(server.url, server.env.tokens["agent2"]).register_agent("a2", sites=["TEST"], capacity=1)
    assert {a.request_id for a in agent.acquire("a1", jobs=10)} == set(ids.values())
    ids["other"] = submit(server.env, "bob", auto_workflow("other-auto"))
    return server, ids


def item(request_id: int, **change: Any) -> dict[str, Any]:
    return {"request_id": request_id, "state": "sized", "events_per_job": 100, "memory_mb": 500, "time_s": 90,
            "figures": {"jobs_measured": 4, "median_wall_s_per_event": 0.05}, "formula": "x = y",
            "computed_at": 1_800_000_000.0, **change}


def test_hostile_sizing_pushes_are_refused_and_store_nothing(held: tuple[Server, dict[str, int]]) -> None:
    server, ids = held
    auto = ids["auto"]
    before = snapshot(server)
    many_figures = {f"f{i}": 1 for i in range(51)}
    cases: list[tuple[str, str, str, Any, int, str]] = [
        # (name, token, agent, body, status, what the answer names)
        ("too_many_requests", "agent1", "a1", {"sizings": [item(i) for i in range(101)]}, 422, "sizings"),
        ("too_many_figures", "agent1", "a1", {"sizings": [item(auto, figures=many_figures)]}, 422,
         "sizings[0].figures"),
        ("formula_too_long", "agent1", "a1", {"sizings": [item(auto, formula="x" * 2001)]}, 422,
         "sizings[0].formula"),
        ("body_too_large", "agent1", "a1", {"sizings": [item(auto, formula="x" * 2_000_000)]}, 413, "too_large"),
        ("request_id_string", "agent1", "a1", {"sizings": [item(str(auto))]}, 422, "sizings[0].request_id"),
        ("request_id_2_64", "agent1", "a1", {"sizings": [item(2**64)]}, 422, "sizings[0].request_id"),
        ("memory_float", "agent1", "a1", {"sizings": [item(auto, memory_mb=1.5)]}, 422, "sizings[0].memory_mb"),
        ("memory_negative", "agent1", "a1", {"sizings": [item(auto, memory_mb=-1)]}, 422, "sizings[0].memory_mb"),
        ("events_zero", "agent1", "a1", {"sizings": [item(auto, events_per_job=0)]}, 422,
         "sizings[0].events_per_job"),
        ("figure_string", "agent1", "a1", {"sizings": [item(auto, figures={"p95": "fast"})]}, 422,
         "sizings[0].figures.p95"),
        ("figure_bool", "agent1", "a1", {"sizings": [item(auto, figures={"p95": True})]}, 422,
         "sizings[0].figures.p95"),
        ("figure_nested", "agent1", "a1", {"sizings": [item(auto, figures={"p95": {"a": 1}})]}, 422,
         "sizings[0].figures.p95"),
        ("figure_name", "agent1", "a1", {"sizings": [item(auto, figures={"<script>": 1})]}, 422,
         "sizings[0].figures"),
        ("figure_huge", "agent1", "a1", {"sizings": [item(auto, figures={"p95": 1e300})]}, 422,
         "sizings[0].figures.p95"),
        ("state_unknown", "agent1", "a1", {"sizings": [item(auto, state="done")]}, 422, "sizings[0].state"),
        ("reason_escape", "agent1", "a1", {"sizings": [item(auto, state="paused", reason="x\x1b[31m")]}, 422,
         "sizings[0].reason"),
        ("extra_key", "agent1", "a1", {"sizings": [item(auto, owner="mallory")]}, 422, "sizings[0].owner"),
        ("twice_the_same", "agent1", "a1", {"sizings": [item(auto), item(auto)]}, 422, "sizings"),
        ("not_a_list", "agent1", "a1", {"sizings": item(auto)}, 422, "sizings"),
        # authorisation: another request, an unknown one, a request without per_job auto, another agent
        ("another_request", "agent1", "a1", {"sizings": [item(auto), item(ids["other"])]}, 403,
         f"request(s) {ids['other']}"),
        ("unknown_request", "agent1", "a1", {"sizings": [item(99_999)]}, 403, "request(s) 99999"),
        ("same_token_other_agent", "agent1", "a2-of-agent1", {"sizings": [item(auto)]}, 403, "request(s)"),
        ("fixed_size_request", "agent1", "a1", {"sizings": [item(ids["fixed"])]}, 422, "sizings[0].request_id"),
        ("another_agents_name", "agent2", "a1", {"sizings": [item(auto)]}, 403, "registered by token"),
        ("requester_token", "alice", "a1", {"sizings": [item(auto)]}, 403, "role requester"),
    ]
    wrong = []
    for name, token, agent, body, status, named in cases:
        r = httpx.post(f"{server.url}/api/v1/agents/{agent}/sizing", content=json.dumps(body),
                       headers={"Authorization": f"Bearer {server.env.tokens[token]}",
                                "Content-Type": "application/json"}, timeout=60)
        answer = r.json()
        said = " ".join([answer.get("error", ""), answer.get("detail", ""),
                         *(e["path"] + " " + e["message"] for e in answer.get("errors") or [])])
        if r.status_code != status or named not in said:
            wrong.append((name, r.status_code, said[:300]))
    assert wrong == [], "\n".join(map(str, wrong))
    assert snapshot(server) == before

    agent = ProdManagerClient(server.url, server.env.tokens["agent1"])
    good = RequestSizing.model_validate(item(auto))
    assert agent.report_sizing("a1", [good]).accepted == 1
    stale = good.model_copy(update={"computed_at": good.computed_at - 60, "events_per_job": 1})
    assert agent.report_sizing("a1", [stale]).accepted == 0  # a delayed resend changes nothing
    [row] = stored(server)
    assert (row.request_id, row.events_per_job) == (auto, 100)


def test_request_page_shows_each_agents_sizing(held: tuple[Server, dict[str, int]]) -> None:
    server, ids = held
    agent = ProdManagerClient(server.url, server.env.tokens["agent1"])
    evil = '<img src=x onerror="alert(1)">'
    pushed = RequestSizing.model_validate(item(ids["auto"], formula=f"a = b; c = {evil}"))
    agent.report_sizing("a1", [pushed])
    web, _csrf = browser(server, "alice")
    page = web.get(f"/requests/{ids['auto']}").text
    twin = web.get(f"/api/v1/monitor/requests/{ids['auto']}").json()
    assert twin["sizing"][0]["agent"] == "a1" and twin["sizing"][0]["events_per_job"] == 100
    assert '<tr data-agent="a1" data-state="sized">' in page
    assert '<td class="events-per-job">100</td>' in page and "500 MB" in page and "90 s" in page
    assert "4 job(s) measured" in page and "median_wall_s_per_event <b>0.05</b>" in page
    assert "a = b\nc = &lt;img src=x onerror=" in page and evil not in page  # one line per expression, escaped
    assert 'id="sizing"' not in web.get(f"/requests/{ids['fixed']}").text
