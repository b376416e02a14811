"""Policies over real HTTP on SQLite and MariaDB: what a requester sees (its own requests only;
another's answers 404 like an unknown id), who may submit arbitrary commands (a token flag, off
by default; operators by role), where input files may come from (configured prefixes), and how
fast a revocation bites (at the next call)."""

from __future__ import annotations

import json
import time

import httpx
import pytest
from click.testing import CliRunner

from prodmanager.auth import create_token
from prodmanager.cli import main as prodmanager_cli
from prodmanager.client import ProdManagerClient
from prodmanager.db import queries as q
from prodmanager.errors import Forbidden, InvalidInput, NotFound, Unauthorized
from prodmanager.request_service import RequestService
from tests.prodmanager.conftest import Env, Server, mc_workflow

COMMAND = {"command": ["sh", "-c", "echo hi"], "version": "1"}


def client(server: Server, who: str) -> ProdManagerClient:
    return ProdManagerClient(server.url, server.env.tokens[who])


def test_a_requester_sees_only_its_own_requests(server: Server) -> None:
    alice, bob, ops = client(server, "alice"), client(server, "bob"), client(server, "ops")
    mine = alice.submit(mc_workflow("alices", 500, 100)).request.id
    theirs = bob.submit(mc_workflow("bobs", 500, 100)).request.id
    assert [r.id for r in alice.list()] == [mine]
    assert [r.id for r in bob.list()] == [theirs]
    assert bob.list(owner="alice") == []
    assert sorted(r.id for r in ops.list()) == sorted([mine, theirs])
    assert [r.id for r in ops.list(owner="alice")] == [mine]
    assert ops.get(mine).owner == "alice"

    # Another's request is answered exactly like one that does not exist.
    headers = {"Authorization": f"Bearer {server.env.tokens['bob']}"}
    for suffix in ("", "/allocations"):
        other = httpx.get(f"{server.url}/api/v1/requests/{mine}{suffix}", headers=headers)
        missing = httpx.get(f"{server.url}/api/v1/requests/999{suffix}", headers=headers)
        assert other.status_code == missing.status_code == 404
        assert other.json() == {"error": "not_found", "detail": f"no request {mine}"}
    before = server.env.db.read(q.table_counts)
    for action in ("abort", "pause", "resume", "close", "clone"):
        r = httpx.post(f"{server.url}/api/v1/requests/{mine}/{action}", headers=headers)
        assert r.status_code == 404, (action, r.text)
    assert server.env.db.read(q.table_counts) == before
    assert alice.get(mine).state == "new"


def test_agents_still_get_everyones_work(server: Server) -> None:
    client(server, "alice").submit(mc_workflow("alices", 200, 100))
    client(server, "bob").submit(mc_workflow("bobs", 200, 100))
    agent = client(server, "agent1")
    agent.register_agent("a1", capacity=10)
    assert {a.request_name for a in agent.acquire("a1", jobs=10)} == {"alices", "bobs"}
    with pytest.raises(Forbidden):
        agent.list()


def test_command_payloads_need_their_own_permission(server: Server) -> None:
    env = server.env
    doc = mc_workflow("commands", 500, 100, payload=COMMAND)
    before = env.db.read(q.table_counts)
    with pytest.raises(Forbidden) as info:
        client(server, "alice").submit(doc)
    assert [e["path"] for e in info.value.details["errors"]] == ["payload.command"]
    assert "--allow-commands" in info.value.message
    assert env.db.read(q.table_counts) == before

    carol = ProdManagerClient(server.url, create_token(env.db, "carol", "requester", True))
    request = carol.submit(doc).request
    assert request.owner == "carol"
    carol.abort(request.id)
    # A token of the same name without the permission may not run the command again by cloning.
    plain_carol = ProdManagerClient(server.url, create_token(env.db, "carol", "requester"))
    with pytest.raises(Forbidden, match="command"):
        plain_carol.clone(request.id)
    assert carol.clone(request.id).created
    ops = client(server, "ops")  # operators have it by role
    assert ops.submit(mc_workflow("ops-commands", 500, 100, payload=COMMAND)).created


def test_token_create_with_allow_commands(server: Server) -> None:
    runner = CliRunner()
    url = server.env.url
    made = runner.invoke(
        prodmanager_cli,
        ["token", "create", "--role", "requester", "--name", "dave", "--allow-commands"]
        + ["--db", url, "--json"],
    )
    assert made.exit_code == 0, made.output
    assert json.loads(made.output)["allow_commands"] is True
    plain = runner.invoke(
        prodmanager_cli,
        ["token", "create", "--role", "requester", "--name", "erin", "--db", url, "--json"],
    )
    assert json.loads(plain.output)["allow_commands"] is False
    listed = json.loads(
        runner.invoke(prodmanager_cli, ["token", "list", "--db", url, "--json"]).output
    )
    flags = {t["name"]: bool(t["allow_commands"]) for t in listed}
    assert flags["dave"] is True and flags["erin"] is False and flags["alice"] is False
    dave = ProdManagerClient(server.url, json.loads(made.output)["token"])
    assert dave.submit(mc_workflow("daves", 500, 100, payload=COMMAND)).created
    bad = runner.invoke(
        prodmanager_cli,
        ["token", "create", "--role", "requester", "--name", "\u001b[31m", "--db", url],
    )
    assert bad.exit_code != 0


def _processing(*lfns: str) -> bytes:
    doc = mc_workflow("files", 1, 1)
    del doc["events"]
    doc["kind"] = "processing"
    doc["payload"] = {"transformation": "reconstruct", "version": "1"}
    doc["input"] = {"files": list(lfns)}
    return json.dumps(doc).encode()


@pytest.mark.parametrize(
    "lfn",
    [
        "file:///etc/passwd",
        "/store/../etc/passwd",
        "/store/data/./x.root",
        "root://evil.example.org//store/x.root",
        "/etc/shadow",
        "data/x.root",
        "/storex/y.root",
    ],
)
def test_input_files_must_lie_under_an_allowed_prefix(env: Env, lfn: str) -> None:
    before = env.db.read(q.table_counts)
    with pytest.raises(InvalidInput) as info:
        env.requests.submit_document(env.who("alice"), _processing("/store/data/a.root", lfn), "application/json")
    assert [e["path"] for e in info.value.details["errors"]] == ["input.files[1].lfn"]
    assert env.db.read(q.table_counts) == before


def test_input_prefixes_are_the_deployments_choice(env: Env) -> None:
    service = RequestService(env.db, ("root://eos.example.org//eos/cms/store/",))
    alice = env.who("alice")
    ok = service.submit_document(alice, _processing("root://eos.example.org//eos/cms/store/a.root"), "application/json")
    assert ok.created
    with pytest.raises(InvalidInput):
        service.submit_document(alice, _processing("/store/data/a.root"), "application/json")
    assert env.requests.input_prefixes == ("/store/",)


def test_a_revoked_token_is_refused_at_its_next_call(server: Server) -> None:
    bob = client(server, "bob")
    assert bob.whoami().name == "bob"
    rows = server.env.db.read(q.list_tokens)
    bob_id = next(r.id for r in rows if r.name == "bob")
    server.env.db.transaction(lambda conn: q.revoke_token(conn, bob_id, time.time()))
    with pytest.raises(Unauthorized):
        bob.whoami()


def test_unknown_request_is_still_404_for_operators(server: Server) -> None:
    with pytest.raises(NotFound):
        client(server, "ops").get(12345)
