"""Access control over real HTTP: missing, wrong and under-privileged tokens are refused with a
clear JSON body, and nothing changes."""

from __future__ import annotations

import time

import httpx
import pytest

from prodmanager.client import ProdManagerClient
from prodmanager.db import queries as q
from prodmanager.errors import Forbidden, NotFound, Unauthorized
from tests.prodmanager.conftest import WORKFLOWS, Server, mc_workflow

DOC = (WORKFLOWS / "minbias_demo.yaml").read_bytes()
ENDPOINTS = [
    ("GET", "/api/v1/requests", None),
    ("POST", "/api/v1/requests", DOC),
    ("GET", "/api/v1/requests/1", None),
    ("POST", "/api/v1/requests/1/abort", b"{}"),
    ("POST", "/api/v1/agents", b'{"name": "x", "capacity": 1}'),
    ("POST", "/api/v1/agents/x/acquire", b"{}"),
    ("POST", "/api/v1/agents/x/renew", b'{"leases": []}'),
    ("POST", "/api/v1/agents/x/allocations/1/complete", b'{"lease_token": "t", "events_done": 1}'),
]


def snapshot(server: Server) -> dict[str, object]:
    env = server.env
    states = [r.state for r in env.requests.list(env.who("ops"))]
    return {"counts": env.db.read(q.table_counts), "states": states}


@pytest.fixture
def seeded(server: Server) -> Server:
    """alice owns request 1; agent a1 is registered by agent1 and holds one allocation."""
    client = ProdManagerClient(server.url, server.env.tokens["alice"])
    assert client.submit(mc_workflow("alices", 500, 100)).request.id == 1
    agent = ProdManagerClient(server.url, server.env.tokens["agent1"])
    agent.register_agent("a1", capacity=2)
    assert len(agent.acquire("a1", jobs=1)) == 1
    return server


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer pm_not-a-real-token", "Basic YWxpY2U6c2VjcmV0", "Bearer", "pm_no_scheme"],
    ids=["missing", "wrong", "basic", "empty", "no-scheme"],
)
def test_missing_or_wrong_token_is_401_and_changes_nothing(
    seeded: Server, authorization: str | None
) -> None:
    before = snapshot(seeded)
    headers = {"Authorization": authorization} if authorization is not None else {}
    for method, path, body in ENDPOINTS:
        r = httpx.request(method, seeded.url + path, content=body, headers=headers)
        assert r.status_code == 401, (method, path, r.text)
        assert r.json()["error"] == "unauthorized" and r.json()["detail"]
        assert r.headers["www-authenticate"] == "Bearer"
    assert snapshot(seeded) == before


def test_revoked_token_is_refused(seeded: Server) -> None:
    env = seeded.env
    rows = env.db.read(q.list_tokens)
    bob = next(r.id for r in rows if r.name == "bob")
    env.db.transaction(lambda conn: q.revoke_token(conn, bob, time.time()))
    with pytest.raises(Unauthorized, match="unknown or revoked"):
        ProdManagerClient(seeded.url, env.tokens["bob"]).list()


def test_under_privileged_tokens_are_403_and_change_nothing(seeded: Server) -> None:
    env, url = seeded.env, seeded.url
    bob = ProdManagerClient(url, env.tokens["bob"])
    alice = ProdManagerClient(url, env.tokens["alice"])
    agent1 = ProdManagerClient(url, env.tokens["agent1"])
    agent2 = ProdManagerClient(url, env.tokens["agent2"])
    before = snapshot(seeded)
    for call in (lambda: bob.abort(1), lambda: bob.pause(1), lambda: bob.clone(1)):
        with pytest.raises(NotFound):  # another requester's request: as if it did not exist
            call()
    refused = [
        lambda: agent1.submit(DOC),  # agents only pull and report
        lambda: agent1.list(),
        lambda: agent1.abort(1),
        lambda: alice.register_agent("mine", capacity=5),  # requesters do not pull
        lambda: alice.acquire("a1"),
        lambda: alice.agents(),  # operators only
        lambda: agent2.acquire("a1"),  # a1 belongs to agent1's token
        lambda: agent2.register_agent("a1", capacity=100),
    ]
    for call in refused:
        with pytest.raises(Forbidden) as info:
            call()
        assert info.value.status == 403 and "token" in info.value.message
    assert snapshot(seeded) == before


def test_forbidden_body_is_clear(seeded: Server) -> None:
    r = httpx.post(
        seeded.url + "/api/v1/requests/1/abort",
        headers={"Authorization": f"Bearer {seeded.env.tokens['agent1']}"},
    )
    assert r.status_code == 403
    assert r.json() == {
        "error": "forbidden",
        "detail": "token 'agent1' has role agent; this needs requester",
    }


def test_operator_acts_on_any_request(seeded: Server) -> None:
    ops = ProdManagerClient(seeded.url, seeded.env.tokens["ops"])
    assert ops.whoami().role == "operator"
    assert ops.pause(1, "maintenance").state == "paused"
    assert ops.abort(1).state == "aborted"
    history = ops.get(1).history
    assert [(h.to_state, h.actor) for h in history[-2:]] == [("paused", "ops"), ("aborted", "ops")]
    assert [a.held for a in ops.agents()] == [0]  # the recalled allocation no longer counts
