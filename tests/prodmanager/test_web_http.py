"""The web monitor over real HTTP, without a browser: the sign-in cookie and CSRF, visibility
(the API's rules), escaping, the validate endpoint, the job detail agents push, and a processing
request's files, runs (with the operator's run buttons) and chain."""

from __future__ import annotations

import re
import time

import httpx
import pytest
import yaml

from prodmanager.client import ProdManagerClient
from prodmanager.errors import Forbidden
from prodmanager.models import ComponentState, JobEvent, ReleaseRequest
from tests.prodmanager.conftest import WORKFLOWS, Server, mc_workflow
from tests.prodmanager.conftest import submit as submit_doc
from tests.prodmanager.test_pull import acquire, complete, out, register
from tests.prodmanager.test_runs import processing

DOC = (WORKFLOWS / "minbias_demo.yaml").read_text()


def bearer(server: Server, who: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {server.env.tokens[who]}"}


def browser(server: Server, who: str) -> tuple[httpx.Client, str]:
    """A signed-in cookie session and its CSRF token."""
    web = httpx.Client(base_url=server.url)
    answer = web.post("/login", data={"token": server.env.tokens[who]})
    assert answer.status_code == 303
    csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', web.get("/submit").text)
    assert csrf
    return web, csrf.group(1)


def submit(server: Server, who: str, name: str) -> int:
    client = ProdManagerClient(server.url, server.env.tokens[who])
    return client.submit(DOC.replace("minbias_13tev_demo", name).encode()).request.id


def test_sign_in_cookie_and_csrf(server: Server) -> None:
    anonymous = httpx.get(f"{server.url}/requests", headers={"Accept": "text/html"})
    assert anonymous.status_code == 303 and anonymous.headers["location"] == "/login"
    assert httpx.get(f"{server.url}/requests").status_code == 401  # not a browser: no redirect
    assert httpx.get(f"{server.url}/api/v1/monitor/requests").status_code == 401
    refused = httpx.post(f"{server.url}/login", data={"token": "pm_nope"})
    assert refused.status_code == 401 and "unknown or revoked token" in refused.text

    answer = httpx.post(f"{server.url}/login", data={"token": server.env.tokens["alice"]})
    cookie = answer.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "secure" not in cookie

    request_id = submit(server, "alice", "web-csrf")
    web, csrf = browser(server, "alice")
    assert web.post(f"/requests/{request_id}/abort", data={"reason": "x"}).status_code == 403
    assert web.post(f"/requests/{request_id}/abort", data={"csrf": "0" * 64}).status_code == 403
    # The API never takes the cookie for a change (no CSRF there): it wants the bearer token.
    assert web.post(f"/api/v1/requests/{request_id}/abort", json={}).status_code == 401
    assert web.get(f"/api/v1/monitor/requests/{request_id}").json()["state"] == "new"
    moved = web.post(f"/requests/{request_id}/pause", data={"csrf": csrf, "reason": "look"})
    assert moved.status_code == 303
    assert web.get(f"/api/v1/monitor/requests/{request_id}").json()["state"] == "paused"
    web.post("/logout")
    web.cookies.clear()
    assert web.get("/requests").status_code == 401


def test_visibility_is_the_apis(server: Server) -> None:
    mine = submit(server, "alice", "web-alice")
    theirs = submit(server, "bob", "web-bob")
    web, csrf = browser(server, "alice")
    assert web.get(f"/requests/{theirs}").status_code == 404
    assert web.get(f"/api/v1/monitor/requests/{theirs}").status_code == 404
    assert web.post(f"/requests/{theirs}/abort", data={"csrf": csrf}).status_code == 404
    listed = web.get("/api/v1/monitor/requests", params={"owner": "bob"}).json()
    assert [r["id"] for r in listed["items"]] == [mine]
    jobs = web.get("/api/v1/monitor/jobs").json()["items"]
    assert jobs and {j["request_id"] for j in jobs} == {mine}
    assert web.get("/agents").status_code == 403  # operators only, as GET /api/v1/agents
    ops, _ = browser(server, "ops")
    assert ops.get(f"/requests/{theirs}").status_code == 200
    assert ops.get("/agents").status_code == 200


def test_pages_escape_text_and_match_their_json_twin(server: Server) -> None:
    request_id = submit(server, "alice", "web-escape")
    web, csrf = browser(server, "alice")
    evil = '<img src=x onerror="alert(1)">'
    web.post(f"/requests/{request_id}/pause", data={"csrf": csrf, "reason": evil})
    page = web.get(f"/requests/{request_id}").text
    assert evil not in page and "&lt;img src=x onerror=" in page
    twin = web.get(f"/api/v1/monitor/requests/{request_id}").json()
    assert f'id="events-allocated">{twin["counters"]["events_allocated"]}<' in page
    assert f'data-code="{twin["why"][0]["code"]}"' in page
    row = web.get("/requests", params={"fragment": "true"}).text
    assert f'href="/requests/{request_id}"' in row


def test_validate_names_the_fields_and_stores_nothing(server: Server) -> None:
    bad = DOC.replace("per_job: 250", "per_job: 0")
    answer = httpx.post(f"{server.url}/api/v1/requests/validate", content=bad,
                        headers=bearer(server, "alice"))
    assert answer.status_code == 422
    assert [e["path"] for e in answer.json()["errors"]] == ["events.per_job"]
    command = yaml.safe_load(DOC)
    command["payload"] = {"command": ["sh", "-c", "true"], "version": "1"}
    answer = httpx.post(f"{server.url}/api/v1/requests/validate", json=command,
                        headers=bearer(server, "alice"))
    assert answer.status_code == 403 and "payload.command" in answer.text
    good = httpx.post(f"{server.url}/api/v1/requests/validate", content=DOC,
                      headers=bearer(server, "alice"))
    assert good.json() == {"valid": True}
    web, csrf = browser(server, "alice")
    form = web.post("/submit/validate", data={"document": bad, "csrf": csrf}).text
    assert 'data-path="events.per_job"' in form
    refused = web.post("/submit", data={"document": bad, "csrf": csrf})
    assert refused.status_code == 422 and 'data-path="events.per_job"' in refused.text
    assert httpx.get(f"{server.url}/api/v1/requests", headers=bearer(server, "ops")).json() == []


def test_job_events_are_stored_once_and_only_from_their_agent(server: Server) -> None:
    request_id = submit(server, "alice", "web-jobs")
    agent = ProdManagerClient(server.url, server.env.tokens["agent1"])
    agent.register_agent("agent1", sites=["T2_XY"], capacity=2)
    held = agent.acquire("agent1", jobs=1, lease_seconds=300)[0]
    now = time.time()
    events = [
        {"seq": 10, "allocation_id": held.allocation_id, "job_name": "j-1", "retry": 0,
         "from_state": "running", "to_state": "jobfailed", "at": now, "site": "T2_XY",
         "exit_code": 66, "log_tail": ["Begin Job", "%MSG-e injected <b>failure</b>"]},
        {"seq": 11, "allocation_id": held.allocation_id, "job_name": "j-1", "retry": 0,
         "from_state": "jobfailed", "to_state": "cooloff", "at": now, "site": "T2_XY",
         "exit_code": 66, "error_class": "PayloadError",
         "reason": "PayloadError: exit code 66; retry in 30s"},
    ]
    path = f"{server.url}/api/v1/agents/agent1/jobs"
    first = httpx.post(path, json={"events": events}, headers=bearer(server, "agent1")).json()
    again = httpx.post(path, json={"events": events}, headers=bearer(server, "agent1")).json()
    assert (first["accepted"], first["last_seq"], again["accepted"], again["last_seq"]) == (2, 11, 0, 11)
    agent2 = ProdManagerClient(server.url, server.env.tokens["agent2"])
    agent2.register_agent("agent2", sites=["T2_XY"], capacity=1)
    other = [dict(events[0], seq=99)]
    stolen = httpx.post(f"{server.url}/api/v1/agents/agent2/jobs", json={"events": other},
                        headers=bearer(server, "agent2")).json()
    assert (stolen["accepted"], stolen["last_seq"]) == (0, 0)  # not its allocation

    ops = bearer(server, "ops")
    job = httpx.get(f"{server.url}/api/v1/monitor/jobs/{held.allocation_id}", headers=ops).json()
    assert [e["to_state"] for e in job["events"]] == ["jobfailed", "cooloff"]
    assert job["job_state"] == "cooloff" and "injected <b>failure</b>" in job["logs"][0]["text"]
    detail = httpx.get(f"{server.url}/api/v1/monitor/requests/{request_id}", headers=ops).json()
    grid = detail["errors"]["rows"]
    assert grid == [{"error": "PayloadError", "cells": {"T2_XY": {"n": 1, "pct": 100.0}},
                     "total": 1}]
    cooloff = next(w for w in detail["why"] if w["code"] == "cooloff")["text"]
    assert "1 PayloadError until" in cooloff
    found = httpx.get(f"{server.url}/api/v1/monitor/jobs", headers=ops,
                      params={"site": "T2_XY", "error_class": "PayloadError", "exit_code": 66})
    assert [j["id"] for j in found.json()["items"]] == [held.allocation_id]
    page = httpx.get(f"{server.url}/jobs/{held.allocation_id}", headers=ops).text
    assert "injected &lt;b&gt;failure&lt;/b&gt;" in page


def test_resubmit_paused_jobs_by_class_reaches_their_agent(server: Server) -> None:
    request_id = submit(server, "alice", "web-resubmit")
    agent = ProdManagerClient(server.url, server.env.tokens["agent1"])
    agent.register_agent("agent1", sites=["T2_XY"], capacity=2)
    held = agent.acquire("agent1", jobs=2, lease_seconds=300)
    paused = [
        JobEvent(seq=20 + i, allocation_id=a.allocation_id, job_name=f"j-{i}", retry=0,
                 from_state="jobfailed", to_state="paused", at=time.time(),
                 error_class=cls, reason=f"{cls}: boom; paused for an operator")
        for i, (a, cls) in enumerate(zip(held, ["FatalError", "OutOfMemory"], strict=True))
    ]
    assert agent.report_jobs("agent1", paused).resubmit == []
    path = f"{server.url}/api/v1/requests/{request_id}/resubmit"
    body = {"error_class": "FatalError"}
    assert httpx.post(path, json=body, headers=bearer(server, "bob")).status_code == 404
    assert httpx.post(path, json=body, headers=bearer(server, "alice")).json() == {"allocations": 1}
    fatal = held[0].allocation_id
    assert agent.report_jobs("agent1", []).resubmit == [fatal]  # asked until the job moves on
    moved = paused[0].model_copy(update={"seq": 30, "from_state": "paused", "to_state": "created"})
    assert agent.report_jobs("agent1", [moved]).resubmit == []
    # The page's button is the same call: the owner may press it, with the CSRF token.
    web, csrf = browser(server, "alice")
    page = web.get(f"/requests/{request_id}").text
    assert 'data-class="OutOfMemory"' in page and 'data-class="FatalError"' not in page
    pressed = web.post(f"/requests/{request_id}/resubmit", data={"csrf": csrf, "error_class": "OutOfMemory"})
    assert pressed.status_code == 303, pressed.text
    assert agent.report_jobs("agent1", []).resubmit == [held[1].allocation_id]


def test_agent_status_shows_components_and_dead_letters(server: Server) -> None:
    request_id = submit(server, "alice", "web-status")
    agent = ProdManagerClient(server.url, server.env.tokens["agent1"])
    agent.register_agent("agent1", sites=["T2_XY"], capacity=2)
    agent.acquire("agent1", jobs=1, lease_seconds=300)
    components = [
        ComponentState(name="JobTracker", alive=True, state="alive", heartbeat_age_s=1.5,
                       pending=3, dead_letters=2),
        ComponentState(name="MergeSensor", alive=False, state="dead"),
    ]
    agent.report_status("agent1", components)
    intruder = ProdManagerClient(server.url, server.env.tokens["agent2"])
    with pytest.raises(Forbidden):
        intruder.report_status("agent1", [])
    ops = bearer(server, "ops")
    agents = httpx.get(f"{server.url}/api/v1/monitor/agents", headers=ops).json()["items"]
    assert [c["dead_letters"] for c in agents[0]["components"]] == [2, 0]
    why = httpx.get(f"{server.url}/api/v1/monitor/requests/{request_id}", headers=ops).json()["why"]
    texts = {w["code"]: w["text"] for w in why}
    assert "2 JobTracker" in texts["dead_letters"] and "MergeSensor" in texts["components_down"]
    page = httpx.get(f"{server.url}/agents", headers=ops).text
    assert "JobTracker" in page and "MergeSensor" in page


def test_processing_request_shows_files_runs_and_run_buttons(server: Server) -> None:
    env = server.env
    rid = submit_doc(env, "alice", processing("web-runs", {7: 2, 8: 1}))
    register(env)
    allocs = acquire(env, jobs=100, lease_seconds=300)  # run 8 stays assigned throughout
    run7 = [a for a in allocs if a.input_files[0].run == 7]
    complete(env, run7[0], files=[out(run7[0])])
    env.pull.release(env.who("agent1"), "a1", run7[1].allocation_id,
                     ReleaseRequest(lease_token=run7[1].lease_token, failed=True, reason="exhausted"))

    web, csrf = browser(server, "alice")
    twin = web.get(f"/api/v1/monitor/requests/{rid}").json()
    counts = twin["files_progress"]["counts"]
    assert (counts["processed"], counts["assigned"], counts["failed"], twin["files_progress"]["total"]) == (1, 1, 1, 3)
    runs = {r["run"]: r for r in twin["runs"]}
    assert (runs[7]["state"], runs[7]["decisions"], runs[8]["state"]) == (
        "needs_attention", ["accept", "drop", "reprocess"], "open")
    attention = next(w for w in twin["why"] if w["code"] == "run_attention")
    assert attention["run"] == 7 and "1 of 2 file(s) failed: 10 of 20 input events" in attention["text"]
    page = web.get(f"/requests/{rid}").text
    assert 'data-run="7" data-state="needs_attention"' in page and 'href="#runs"' in page
    assert 'class="run-action"' not in page  # a requester gets no run buttons, and may not press
    assert web.post(f"/requests/{rid}/runs/7/accept", data={"csrf": csrf}).status_code == 403
    row = web.get("/requests", params={"fragment": "true"}).text
    assert "1 processed, 1 assigned, 1 failed, 0 given up of 3 files" in row

    ops, ops_csrf = browser(server, "ops")
    assert 'data-action="accept"' in ops.get(f"/requests/{rid}").text
    assert ops.post(f"/requests/{rid}/runs/7/accept", data={"reason": "x"}).status_code == 403
    assert ops.post(f"/requests/{rid}/runs/8/accept", data={"csrf": ops_csrf}).status_code == 409
    pressed = ops.post(f"/requests/{rid}/runs/7/accept", data={"csrf": ops_csrf, "reason": "lost"})
    assert pressed.status_code == 303, pressed.text
    after = {r["run"]: r for r in ops.get(f"/api/v1/monitor/requests/{rid}").json()["runs"]}
    assert (after[7]["decision"], after[7]["files"]["given_up"]) == ("accepted", 1)


def test_chained_request_names_its_producer_and_the_producer_its_consumers(server: Server) -> None:
    env = server.env
    gen = submit_doc(env, "alice", mc_workflow("web-gen", 100, 50))
    reco = submit_doc(env, "alice", reconstruction("web-reco", "/MinBias/web-gen-v1/GEN"))
    web, _ = browser(server, "alice")
    consumer = web.get(f"/api/v1/monitor/requests/{reco}").json()
    assert consumer["chain"]["producer"] == {"id": gen, "state": "new"}
    waiting = next(w for w in consumer["why"] if w["code"] == "producer")
    assert waiting["text"].startswith(f"waiting for producer request {gen} (new)")
    assert f'id="producer">input /MinBias/web-gen-v1/GEN: produced by <a href="/requests/{gen}"' in (
        web.get(f"/requests/{reco}").text)
    producer = web.get(f"/api/v1/monitor/requests/{gen}").json()
    assert producer["chain"]["consumers"] == [{"id": reco, "state": "new"}]
    assert producer["files_progress"] is None and producer["runs"] == []
    assert f'href="/requests/{reco}">request {reco}</a>' in web.get(f"/requests/{gen}").text
    other = submit_doc(env, "bob", reconstruction("web-reco-bob", "/MinBias/web-gen-v1/GEN"))
    ops, _ = browser(server, "ops")
    seen = ops.get(f"/api/v1/monitor/requests/{gen}").json()["chain"]["consumers"]
    assert [c["id"] for c in seen] == [reco, other]
    mine = web.get(f"/api/v1/monitor/requests/{gen}").json()["chain"]["consumers"]
    assert [c["id"] for c in mine] == [reco]  # a requester sees only its own requests


def reconstruction(name: str, dataset: str) -> dict[str, object]:
    """A processing request chained to the request producing `dataset`."""
    return {
        "kind": "processing", "name": name,
        "payload": {"transformation": "reconstruct", "version": "1"},
        "input": {"dataset": dataset},
        "output": {"dataset": f"/MinBias/{name}-v1/MDST", "tier": "MDST"},
    }
