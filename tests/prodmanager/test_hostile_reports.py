"""Hostile agent reports over real HTTP (SQLite and MariaDB): numbers beyond 64 bits, negative,
floats, strings and booleans where counts go, oversized lists, control characters, NaN, deep
nesting, bad path parameters. Each is answered 4xx naming the field, never 5xx, and no row
changes (not even the agent's last_seen or a lease's expiry).
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from prodmanager.client import ProdManagerClient
from prodmanager.db import schema
from prodmanager.models import Allocation
from tests.prodmanager.conftest import Server, mc_workflow

BIG = 2**64
MAX_ANSWER_BYTES = 20_000


def snapshot(server: Server) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every ProdManager table."""

    def read(conn: sa.Connection) -> dict[str, list[tuple[Any, ...]]]:
        return {
            t.name: sorted(tuple(r) for r in conn.execute(sa.select(t)).all())
            for t in schema.metadata.sorted_tables
        }

    return server.env.db.read(read)


@pytest.fixture
def leased(server: Server) -> tuple[Server, Allocation]:
    """alice's request; agent a1 (token agent1) holds one allocation."""
    ProdManagerClient(server.url, server.env.tokens["alice"]).submit(
        mc_workflow("reports", 500, 100)
    )
    agent = ProdManagerClient(server.url, server.env.tokens["agent1"])
    agent.register_agent("a1", sites=["TEST"], capacity=5)
    (alloc,) = agent.acquire("a1", jobs=1)
    return server, alloc


def file_(**change: Any) -> dict[str, Any]:
    return {
        "lfn": "/store/unmerged/x.root",
        "size": 10,
        "checksum": "adler32:1",
        "events": 1,
        **change,
    }


def cases(a: Allocation) -> list[tuple[str, str, Any, str]]:
    """(name, path under /api/v1/agents, body (dict, or raw bytes), expected error path)."""
    one = f"/a1/allocations/{a.allocation_id}"
    tok = a.lease_token
    done = {"lease_token": tok, "events_done": 100}
    item = {"allocation_id": a.allocation_id, **done}
    return [
        # sizes and event counts
        ("size_2_64", f"{one}/complete", {**done, "files": [file_(size=BIG)]}, "files[0].size"),
        ("size_2_63", f"{one}/complete", {**done, "files": [file_(size=2**63)]}, "files[0].size"),
        ("size_negative", f"{one}/complete", {**done, "files": [file_(size=-1)]}, "files[0].size"),
        ("size_float", f"{one}/complete", {**done, "files": [file_(size=1.5)]}, "files[0].size"),
        ("size_string", f"{one}/complete", {**done, "files": [file_(size="10")]}, "files[0].size"),
        (
            "size_5000_digits",
            f"{one}/complete",
            b'{"lease_token": "%s", "events_done": 1, "files": [{"lfn": "/store/x", "size": %s, "checksum": "a", "events": 1}]}'
            % (tok.encode(), b"9" * 5000),
            "files[0].size",
        ),
        (
            "file_events_2_64",
            f"{one}/complete",
            {**done, "files": [file_(events=BIG)]},
            "files[0].events",
        ),
        ("events_done_2_64", f"{one}/complete", {**done, "events_done": BIG}, "events_done"),
        (
            "events_done_negative",
            f"{one}/report",
            {"lease_token": tok, "events_done": -5},
            "events_done",
        ),
        (
            "events_done_string",
            f"{one}/report",
            {"lease_token": tok, "events_done": "100"},
            "events_done",
        ),
        (
            "events_done_float",
            f"{one}/report",
            {"lease_token": tok, "events_done": 10.0},
            "events_done",
        ),
        (
            "events_done_bool",
            f"{one}/report",
            {"lease_token": tok, "events_done": True},
            "events_done",
        ),
        (
            "events_done_nan",
            f"{one}/report",
            b'{"lease_token": "%s", "events_done": NaN}' % tok.encode(),
            "events_done",
        ),
        (
            "events_done_5000_digits",
            f"{one}/report",
            b'{"lease_token": "%s", "events_done": %s}' % (tok.encode(), b"9" * 5000),
            "events_done",
        ),
        # strings and lists
        (
            "too_many_files",
            f"{one}/complete",
            {**done, "files": [file_(lfn=f"/store/f{i}") for i in range(1001)]},
            "files",
        ),
        (
            "checksum_escape",
            f"{one}/complete",
            {**done, "files": [file_(checksum="adler32:\u001b[31m")]},
            "files[0].checksum",
        ),
        (
            "lfn_too_long",
            f"{one}/complete",
            {**done, "files": [file_(lfn="/store/" + "x" * 600)]},
            "files[0].lfn",
        ),
        (
            "lfn_surrogate",
            f"{one}/complete",
            b'{"lease_token": "%s", "events_done": 1, "files": [{"lfn": "/store/\\ud800", "size": 1, "checksum": "a", "events": 1}]}'
            % tok.encode(),
            "files[0].lfn",
        ),
        (
            "job_state_escape",
            f"{one}/report",
            {"lease_token": tok, "job_state": "\u001b[31m"},
            "job_state",
        ),
        ("lease_token_huge", f"{one}/report", {"lease_token": "t" * 5000}, "lease_token"),
        ("lease_token_not_a_string", f"{one}/report", {"lease_token": 12345}, "lease_token"),
        (
            "release_reason_ansi",
            f"{one}/release",
            {"lease_token": tok, "reason": "\u001b]0;owned\u0007"},
            "reason",
        ),
        (
            "release_reason_surrogate",
            f"{one}/release",
            b'{"lease_token": "%s", "reason": "\\udc80"}' % tok.encode(),
            "reason",
        ),
        (
            "release_reason_too_long",
            f"{one}/release",
            {"lease_token": tok, "reason": "r" * 600},
            "reason",
        ),
        ("unknown_key", f"{one}/report", {"lease_token": tok, "bogus": 1}, "bogus"),
        # bulk completions
        ("completions_501_items", "/a1/completions", {"items": [item] * 501}, "items"),
        (
            "completions_id_2_64",
            "/a1/completions",
            {"items": [{**item, "allocation_id": BIG}]},
            "items[0].allocation_id",
        ),
        (
            "completions_id_string",
            "/a1/completions",
            {"items": [{**item, "allocation_id": str(a.allocation_id)}]},
            "items[0].allocation_id",
        ),
        (
            "completions_too_many_files",
            "/a1/completions",
            {
                "items": [
                    {**item, "files": [file_(lfn=f"/store/{j}/{i}") for i in range(1000)]}
                    for j in range(11)
                ]
            },
            "items",
        ),
        (
            "completions_deep",
            "/a1/completions",
            b'{"items": ' + b"[" * 10_000 + b"]" * 10_000 + b"}",
            "(body)",
        ),
        ("completions_not_an_object", "/a1/completions", b"[1, 2, 3]", "(body)"),
        ("completions_malformed", "/a1/completions", b'{"items": [', "(body)"),
        (
            "completions_300k_values",
            "/a1/completions",
            b'{"items": [' + b"[1]," * 300_000 + b"1]}",
            "(body)",
        ),
        ("completions_duplicate_key", "/a1/completions", b'{"items": [], "items": []}', "items"),
        # merged files
        (
            "merged_request_2_64",
            "/a1/merged",
            {"request_id": BIG, "files": [{**file_(), "inputs": ["/store/x"]}]},
            "request_id",
        ),
        (
            "merged_input_escape",
            "/a1/merged",
            {"request_id": 1, "files": [{**file_(), "inputs": ["/store/\u001b"]}]},
            "files[0].inputs[0]",
        ),
        (
            "merged_size_negative",
            "/a1/merged",
            {"request_id": 1, "files": [{**file_(size=-1), "inputs": ["/store/x"]}]},
            "files[0].size",
        ),
        # renew, acquire, register
        (
            "renew_id_negative",
            "/a1/renew",
            {"leases": [{"allocation_id": -1, "lease_token": tok}]},
            "leases[0].allocation_id",
        ),
        (
            "renew_id_float",
            "/a1/renew",
            {"leases": [{"allocation_id": 1.5, "lease_token": tok}]},
            "leases[0].allocation_id",
        ),
        ("acquire_events_2_64", "/a1/acquire", {"events": BIG}, "events"),
        ("acquire_jobs_string", "/a1/acquire", {"jobs": "many"}, "jobs"),
        ("acquire_lease_nan", "/a1/acquire", b'{"lease_seconds": NaN}', "lease_seconds"),
        ("acquire_lease_infinite", "/a1/acquire", b'{"lease_seconds": 1e999}', "lease_seconds"),
        ("register_capacity_2_64", "", {"name": "a1", "capacity": BIG}, "capacity"),
        (
            "register_site_escape",
            "",
            {"name": "a1", "capacity": 5, "sites": ["\u001b[2J"]},
            "sites[0]",
        ),
        ("register_name_newline", "", {"name": "a\n1", "capacity": 5}, "name"),
        # path parameters
        ("path_id_2_64", f"/a1/allocations/{BIG}/report", {"lease_token": tok}, "allocation_id"),
        (
            "path_id_5000_digits",
            "/a1/allocations/" + "9" * 5000 + "/report",
            {"lease_token": tok},
            "allocation_id",
        ),
        ("path_agent_escape", "/a%1B1/acquire", {}, "agent"),
    ]


def test_hostile_reports_are_refused_naming_the_field(leased: tuple[Server, Allocation]) -> None:
    server, alloc = leased
    before = snapshot(server)
    all_cases = cases(alloc)
    assert len(all_cases) >= 45
    headers = {"Authorization": f"Bearer {server.env.tokens['agent1']}"}
    wrong = []
    with httpx.Client(
        base_url=server.url + "/api/v1/agents", headers=headers, timeout=60
    ) as client:
        for name, path, body, expected in all_cases:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            r = client.post(path, content=data, headers={"Content-Type": "application/json"})
            paths = [e["path"] for e in r.json().get("errors") or []]
            if not (400 <= r.status_code < 500) or expected not in paths:
                wrong.append((name, r.status_code, expected, r.text[:300]))
            elif len(r.content) > MAX_ANSWER_BYTES:
                wrong.append((name, "answer of", len(r.content), "bytes"))
    assert wrong == [], "\n".join(map(str, wrong))
    assert snapshot(server) == before


def test_validation_errors_are_capped_and_never_echo_the_input(
    leased: tuple[Server, Allocation],
) -> None:
    """500 items with three errors each: 50 listed, the rest counted; no input comes back."""
    server, alloc = leased
    secret = "x" * 400
    item = {"allocation_id": -1, "lease_token": secret, "events_done": -1, "files": []}
    r = httpx.post(
        f"{server.url}/api/v1/agents/a1/completions",
        json={"items": [item] * 500},
        headers={"Authorization": f"Bearer {server.env.tokens['agent1']}"},
    )
    body = r.json()
    assert r.status_code == 422
    assert len(body["errors"]) == 50 and body["errors_omitted"] == 1450
    assert secret not in r.text and len(r.content) < MAX_ANSWER_BYTES


def test_a_good_report_still_counts(leased: tuple[Server, Allocation]) -> None:
    """The bounds do not refuse what agents really send."""
    server, alloc = leased
    agent = ProdManagerClient(server.url, server.env.tokens["agent1"])
    ack = agent.report("a1", alloc, events_done=50, job_state="running")
    assert ack.events_done == 50
