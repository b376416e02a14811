"""The `prodrequest` and `prodmanager` commands against a real server, and the client's retries
and error mapping."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from prodmanager.cli import main as prodmanager_cli
from prodmanager.client import ProdManagerClient, ServerUnavailable
from prodmanager.errors import LeaseLost
from prodrequest.cli import main as prodrequest_cli
from tests.prodmanager.conftest import WORKFLOWS, Server, free_port


def run(server: Server, *args: str, token: str = "alice") -> tuple[int, str]:
    env = {"PRODMANAGER_URL": server.url, "PRODMANAGER_TOKEN": server.env.tokens[token]}
    result = CliRunner().invoke(prodrequest_cli, list(args), env=env)
    return result.exit_code, result.output


def run_json(server: Server, *args: str, token: str = "alice") -> object:
    code, output = run(server, *args, "--json", token=token)
    assert code == 0, output
    return json.loads(output)


def test_prodrequest_commands_with_json(server: Server) -> None:
    submitted = run_json(server, "submit", str(WORKFLOWS / "minbias_demo.yaml"))
    assert submitted["created"] and submitted["request"]["total_jobs"] == 20  # type: ignore[index]
    rid = str(submitted["request"]["id"])  # type: ignore[index]
    again = run_json(server, "submit", str(WORKFLOWS / "minbias_demo.yaml"))
    assert not again["created"]  # type: ignore[index]
    run_json(server, "submit", str(WORKFLOWS / "hardqcd_failures.yaml"))
    assert [r["name"] for r in run_json(server, "list", "--state", "new")] == [  # type: ignore[union-attr]
        "hardqcd_failures_demo",
        "minbias_13tev_demo",
    ]
    assert run_json(server, "pause", rid, "--reason", "hold on")["state"] == "paused"  # type: ignore[index]
    assert run_json(server, "list", "--state", "paused")[0]["id"] == int(rid)  # type: ignore[index]
    assert run_json(server, "resume", rid)["state"] == "new"  # type: ignore[index]
    shown = run_json(server, "show", rid)
    assert shown["counters"]["events_requested"] == 5000  # type: ignore[index]
    assert [h["to_state"] for h in shown["history"]] == ["new", "paused", "new"]  # type: ignore[index]
    assert len(run_json(server, "allocations", rid)) == 20  # type: ignore[arg-type]
    code, output = run(server, "watch", rid, "--json", "--interval", "0.1", "--timeout", "0.3")
    assert code == 0 and len(output.splitlines()) >= 2
    assert json.loads(output.splitlines()[0])["state"] == "new"
    assert run_json(server, "abort", rid, "--reason", "test")["state"] == "aborted"  # type: ignore[index]
    cloned = run_json(server, "clone", rid)
    assert cloned["request"]["name"] == "minbias_13tev_demo-acdc1"  # type: ignore[index]
    assert cloned["request"]["total_events"] == 5000  # type: ignore[index]


def test_prodrequest_human_output_and_errors(server: Server, tmp_path: Path) -> None:
    code, output = run(server, "submit", str(WORKFLOWS / "minbias_demo.yaml"))
    assert code == 0 and "submitted: request 1 minbias_13tev_demo" in output
    code, output = run(server, "show", "1")
    assert code == 0 and "requested 5,000" in output and "submitted" in output
    code, output = run(server, "watch", "1", "--interval", "0.1", "--timeout", "0.2")
    assert code == 0 and "produced" in output and "merged" in output
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: montecarlo\nname: ok_name\nevents: {total: -1, per_job: 10}\n")
    code, output = run(server, "submit", str(bad))
    assert code == 1 and "events.total" in output and "payload: field required" in output
    code, output = run(server, "submit", str(bad), "--json")
    body = json.loads(output)
    assert code == 1 and body["error"] == "invalid"
    assert {"events.total", "payload", "output"} <= {e["path"] for e in body["errors"]}
    code, output = run(server, "abort", "1", "--json", token="bob")
    assert code == 1 and json.loads(output)["error"] == "not_found"  # not bob's: not shown
    code, output = run(server, "show", "99")
    assert code == 1 and "no request 99" in output


def test_prodmanager_token_and_db_commands(server: Server) -> None:
    runner = CliRunner()
    url = server.env.url
    result = runner.invoke(
        prodmanager_cli, ["token", "create", "--role", "requester", "--name", "carol", "--db", url]
    )
    assert result.exit_code == 0, result.output
    token = result.output.strip()
    assert token.startswith("pm_") and len(token) > 40
    assert ProdManagerClient(server.url, token).whoami().name == "carol"
    listed = json.loads(
        runner.invoke(prodmanager_cli, ["token", "list", "--db", url, "--json"]).output
    )
    assert "carol" in [t["name"] for t in listed] and "token" not in listed[0]
    carol = next(t for t in listed if t["name"] == "carol")
    assert (
        runner.invoke(prodmanager_cli, ["token", "revoke", str(carol["id"]), "--db", url]).exit_code
        == 0
    )
    bad_role = runner.invoke(
        prodmanager_cli, ["token", "create", "--role", "admin", "--name", "x", "--db", url]
    )
    assert bad_role.exit_code == 2 and "admin" in bad_role.output
    assert "schema at 0008" in runner.invoke(prodmanager_cli, ["db", "upgrade", "--db", url]).output
    assert (
        "current 0008, head 0008"
        in runner.invoke(prodmanager_cli, ["db", "current", "--db", url]).output
    )


def test_client_retries_unavailable_server() -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        if len(calls) < 3:
            return httpx.Response(503)
        return httpx.Response(200, json={"name": "alice", "role": "requester"})

    client = ProdManagerClient("http://pm", "t", retries=3, transport=httpx.MockTransport(handler))
    assert client.whoami().name == "alice" and len(calls) == 3


def test_client_gives_up_after_retries() -> None:
    client = ProdManagerClient(f"http://127.0.0.1:{free_port()}", "t", retries=1, timeout=1)
    with pytest.raises(ServerUnavailable, match="ConnectError"):
        client.whoami()


def test_client_maps_errors_to_exceptions() -> None:
    body = {
        "error": "lease_lost",
        "detail": "lease on allocation 7 is no longer yours",
        "status": "expired",
    }
    transport = httpx.MockTransport(lambda request: httpx.Response(409, json=body))
    client = ProdManagerClient("http://pm", "t", transport=transport)
    with pytest.raises(LeaseLost) as info:
        client.complete("a1", (7, "token"), events_done=10)
    assert info.value.status == 409 and info.value.details == {"status": "expired"}


def test_bulk_completion_over_http(server: Server) -> None:
    from prodmanager.models import OutputFile
    from tests.prodmanager.conftest import mc_workflow, submit

    env = server.env
    rid = submit(env, "alice", mc_workflow("bulk-http", 300, 100))
    client = ProdManagerClient(server.url, env.tokens["agent1"])
    client.register_agent("a1", capacity=10)
    allocs = client.acquire("a1", jobs=3)

    def out(a) -> list[OutputFile]:  # noqa: ANN001
        return [OutputFile(lfn=f"/store/unmerged/bulk/{a.job_index}.root", size=10, checksum="adler32:1", events=a.n_events)]

    results = client.complete_many("a1", [
        ((allocs[0].allocation_id, allocs[0].lease_token), allocs[0].n_events, out(allocs[0])),
        ((allocs[1].allocation_id, "stale"), allocs[1].n_events, out(allocs[1])),
        ((allocs[2].allocation_id, allocs[2].lease_token), allocs[2].n_events, out(allocs[2])),
    ])
    assert [(r.ack is not None, r.error) for r in results] == [(True, None), (False, "lease_lost"), (True, None)]
    assert results[2].ack.files_accepted == 1
    assert env.requests.summary(rid).counters.events_produced == 200
