"""The door over real HTTP: the token is checked before any body is read, every body is limited
(declared or streamed), every route but health needs a token (the API docs too), and stored
text is shown as written, never as Rich markup."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import httpx
import pytest
from click.testing import CliRunner

from prodmanager.app import ServerSettings
from prodmanager.client import ProdManagerClient
from prodmanager.db import queries as q
from prodmanager.guard import BodyLimits
from prodrequest.cli import main as prodrequest_cli
from tests.prodmanager.conftest import Server, mc_workflow

FORTY_MB = 40 * 1024 * 1024


def raw_exchange(url: str, head: str, body: bytes = b"") -> tuple[int, bytes]:
    """Send a request head (and `body`, maybe only a part of what the head declares) on a plain
    socket; return the status and the answer's body."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(head.encode() + b"\r\n" + body)
        answer = b""
        while b"\r\n\r\n" not in answer or len(answer.split(b"\r\n\r\n", 1)[1]) < _length(answer):
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
    status = int(answer.split(b" ", 2)[1])
    return status, answer.split(b"\r\n\r\n", 1)[1]


def _length(answer: bytes) -> int:
    for line in answer.split(b"\r\n\r\n", 1)[0].split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return int(line.split(b":", 1)[1])
    return 0


def head(path: str, length: int, token: str | None = None) -> str:
    lines = [
        f"POST {path} HTTP/1.1",
        "Host: test",
        "Content-Type: application/json",
        f"Content-Length: {length}",
    ]
    if token:
        lines.append(f"Authorization: Bearer {token}")
    return "\r\n".join(lines) + "\r\n"


@pytest.mark.parametrize("token", [None, "pm_not-a-real-token"], ids=["missing", "wrong"])
def test_forty_megabytes_without_a_good_token_is_401_before_the_body(
    server: Server, token: str | None
) -> None:
    """The server answers while it has received none of the 40 MB it was promised: it cannot
    have read, let alone parsed, the body."""
    before = server.env.db.read(q.table_counts)
    for path in ("/api/v1/requests", "/api/v1/agents/x/completions", "/api/v1/requests/1/abort"):
        status, body = raw_exchange(server.url, head(path, FORTY_MB, token))
        assert status == 401, (path, body)
        assert b'"error":"unauthorized"' in body
    assert server.env.db.read(q.table_counts) == before


def test_declared_huge_body_with_a_token_is_413(server: Server) -> None:
    tokens = server.env.tokens
    for path, who in (
        ("/api/v1/requests", "alice"),
        ("/api/v1/requests/1/abort", "alice"),
        ("/api/v1/agents/a1/completions", "agent1"),
        ("/api/v1/agents/a1/merged", "agent1"),
    ):
        status, body = raw_exchange(server.url, head(path, 100 * FORTY_MB, tokens[who]))
        assert status == 413, (path, body)
        assert b'"error":"too_large"' in body


def _chunks(total: int, size: int = 64 * 1024) -> Iterator[bytes]:
    sent = 0
    while sent < total:
        n = min(size, total - sent)
        sent += n
        yield b" " * n


def test_streamed_body_beyond_the_limit_is_413(server: Server) -> None:
    """No Content-Length (chunked): the door counts what arrives."""
    limits = BodyLimits()
    headers = {
        "Authorization": f"Bearer {server.env.tokens['alice']}",
        "Content-Type": "application/json",
    }
    for path, limit in (
        ("/api/v1/requests/1/abort", limits.default),
        ("/api/v1/requests", limits.submit),
    ):
        r = httpx.post(server.url + path, content=_chunks(limit + 1), headers=headers, timeout=60)
        assert r.status_code == 413, (path, r.text)
        assert "more than the limit" in r.json()["errors"][0]["message"]
    # At the limit it is read, and judged on what it holds.
    r = httpx.post(server.url + "/api/v1/requests/1/abort", content=_chunks(1000), headers=headers)
    assert r.status_code == 422 and r.json()["errors"][0]["path"] == "(body)"


def test_bulk_completion_limit_leaves_headroom() -> None:
    """The largest bulk completion the models accept (500 items, 10,000 files of the longest
    names) fits in the completions limit."""
    from prodmanager.models import CompleteItem, CompleteMany, OutputFile

    f = OutputFile(lfn="/" + "x" * 499, size=2**63 - 1, checksum="c" * 100, events=2**63 - 1)
    items = [
        CompleteItem(
            allocation_id=2**63 - 1, lease_token="t" * 64, events_done=2**63 - 1, files=[f] * 20
        )
        for _ in range(500)
    ]
    size = len(CompleteMany(items=items).model_dump_json())
    assert size < BodyLimits().completions
    assert BodyLimits().completions >= 2 * size * 0.9


def test_every_route_but_health_needs_a_token(server: Server) -> None:
    assert httpx.get(server.url + "/api/v1/health").status_code == 200
    for path in ("/docs", "/redoc", "/openapi.json", "/api/v1/whoami", "/nowhere"):
        r = httpx.get(server.url + path)
        assert r.status_code == 401, path
        assert r.headers["www-authenticate"] == "Bearer"
    ops = {"Authorization": f"Bearer {server.env.tokens['ops']}"}
    assert httpx.get(server.url + "/openapi.json", headers=ops).json()["info"]["title"]
    assert httpx.get(server.url + "/docs", headers=ops).status_code == 200


def test_default_settings_close_the_revocation_window() -> None:
    assert ServerSettings(db_url="sqlite://").token_cache_s == 0


def test_reasons_with_markup_are_stored_and_shown_as_written(server: Server) -> None:
    env = server.env
    alice = ProdManagerClient(server.url, env.tokens["alice"])
    rid = alice.submit(mc_workflow("markup", 500, 100)).request.id
    alice.pause(rid, reason="[/]")
    alice.resume(rid, reason="[bold]not bold [link=http://x]y")
    runner = CliRunner()
    result = runner.invoke(
        prodrequest_cli, ["--url", server.url, "--token", env.tokens["alice"], "show", str(rid)]
    )
    assert result.exit_code == 0, result.output
    assert "[/]" in result.output and "[bold]not bold" in result.output
    result = runner.invoke(
        prodrequest_cli, ["--url", server.url, "--token", env.tokens["alice"], "list"]
    )
    assert result.exit_code == 0 and "markup" in result.output


@pytest.mark.parametrize(
    "reason",
    ["\u001b[31mred", "\u001b]0;title\u0007", "two\nlines", "\u202eevil", "nul\u0000"],
    ids=["sgr", "osc", "newline", "bidi", "nul"],
)
def test_reasons_with_control_characters_are_refused(server: Server, reason: str) -> None:
    env = server.env
    alice = ProdManagerClient(server.url, env.tokens["alice"])
    rid = alice.submit(mc_workflow("controls", 500, 100)).request.id
    before = env.db.read(q.table_counts)
    for action in ("pause", "abort", "close", "clone"):
        r = httpx.post(
            f"{server.url}/api/v1/requests/{rid}/{action}",
            json={"reason": reason},
            headers={"Authorization": f"Bearer {env.tokens['alice']}"},
        )
        assert r.status_code == 422, (action, r.text)
        assert [e["path"] for e in r.json()["errors"]] == ["reason"]
    assert env.db.read(q.table_counts) == before
    assert alice.get(rid).state == "new"


def test_description_may_hold_newlines_and_tabs(server: Server) -> None:
    alice = ProdManagerClient(server.url, server.env.tokens["alice"])
    wf = mc_workflow("multiline", 500, 100, description="first line\n\tindented second")
    rid = alice.submit(wf).request.id
    assert alice.get(rid).spec["description"] == "first line\n\tindented second"


def test_one_line_makes_any_text_a_valid_reason() -> None:
    """What clients use for text they pass on (a job's failure output): always accepted."""
    from prodmanager.models import ReleaseRequest
    from prodmanager.text import one_line, text_problem

    for raw in ("exit 1\nTraceback\x1b[0m", "a\u202eb\ud800", "x" * 2000, "\x00\x85\u2028"):
        cleaned = one_line(raw)
        assert text_problem(cleaned) is None and len(cleaned) <= 500
        assert ReleaseRequest(lease_token="t", reason=cleaned).reason == cleaned
