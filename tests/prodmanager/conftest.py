"""Fixtures for ProdManager tests: a migrated database, tokens of every role, an in-process HTTP
server (uvicorn in a thread) and real `prodmanager serve` processes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import uvicorn

from prodagent.components.prodmgr_interface import ProdMgrInterface
from prodagent.config import config_from_dict
from prodagent.jobs import store
from prodagent.runtime.runner import declare_subscriptions, open_service, wait_for_database
from prodmanager.app import ServerSettings, create_app
from prodmanager.auth import Principal, create_token
from prodmanager.db import migrate
from prodmanager.db.engine import Database
from prodmanager.models import Role
from prodmanager.pull_service import PullService
from prodmanager.request_service import RequestService

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / "etc" / "workflows"
LEASE_S = 2.0

PEOPLE = {
    "alice": Role.REQUESTER,
    "bob": Role.REQUESTER,
    "ops": Role.OPERATOR,
    "agent1": Role.AGENT,
    "agent2": Role.AGENT,
}


@dataclass
class Env:
    """A migrated database, its services, and a token per person in PEOPLE."""

    url: str
    db: Database
    requests: RequestService
    pull: PullService
    tokens: dict[str, str] = field(default_factory=dict)

    def who(self, name: str) -> Principal:
        return Principal(name, PEOPLE[name])


@pytest.fixture
def env(db_url: str) -> Iterator[Env]:
    db = Database(db_url)
    migrate.upgrade(db.engine)
    tokens = {name: create_token(db, name, role.value) for name, role in PEOPLE.items()}
    yield Env(db_url, db, RequestService(db), PullService(db, lease_seconds=LEASE_S), tokens)
    db.dispose()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    url: str
    env: Env


@pytest.fixture
def server(env: Env) -> Iterator[Server]:
    """The app served over real HTTP by uvicorn in a thread of the test process."""
    app = create_app(ServerSettings(db_url=env.url, lease_seconds=LEASE_S, token_cache_s=0))
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not srv.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert srv.started, "uvicorn did not start"
    yield Server(f"http://127.0.0.1:{port}", env)
    srv.should_exit = True
    thread.join(5)
    app.state.db.dispose()


def child_env() -> dict[str, str]:
    out = dict(os.environ)
    out["PYTHONPATH"] = str(ROOT) + os.pathsep + out.get("PYTHONPATH", "")
    return out


def start_serve(db_url: str, lease_s: float = LEASE_S) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "prodmanager",
        "serve",
        "--db",
        db_url,
        "--port",
        str(port),
        "--lease-seconds",
        str(lease_s),
        "--log-level",
        "warning",
    ]
    proc = subprocess.Popen(cmd, env=child_env(), stderr=subprocess.PIPE)
    return proc, f"http://127.0.0.1:{port}"


def wait_ready(proc: subprocess.Popen[bytes], url: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err = proc.stderr.read().decode() if proc.stderr else ""
            raise AssertionError(f"prodmanager serve exited {proc.returncode}: {err}")
        try:
            if httpx.get(f"{url}/api/v1/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"prodmanager serve at {url} not ready after {timeout} s")


@pytest.fixture
def serve_processes(env: Env) -> Iterator[Callable[..., list[str]]]:
    """Factory: start N `prodmanager serve` processes on the test database; their URLs."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(n: int, lease_s: float = LEASE_S) -> list[str]:
        started = [start_serve(env.url, lease_s) for _ in range(n)]
        for proc, url in started:
            procs.append(proc)
            wait_ready(proc, url)
        return [url for _, url in started]

    yield start
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def mc_workflow(name: str, total: int, per_job: int, **extra: object) -> dict[str, object]:
    """A small valid Monte Carlo workflow document as a dict."""
    doc: dict[str, object] = {
        "kind": "montecarlo",
        "name": name,
        "payload": {
            "transformation": "pythia",
            "version": "8.317",
            "parameters": {"process": "minbias"},
        },
        "events": {"total": total, "per_job": per_job},
        "output": {"dataset": f"/MinBias/{name}-v1/GEN", "tier": "GEN"},
    }
    doc.update(extra)
    return doc


def submit(env: Env, owner: str, doc: dict[str, object]) -> int:
    from prodrequest.loader import validate_workflow

    result = env.requests.submit(env.who(owner), validate_workflow(doc))
    assert result.created
    return result.request.id


# -- a ProdMgrInterface talking to the server ------------------------------------------------------

AGENT = "a1"


def make_interface(tmp_path: Path, url: str, token: str) -> ProdMgrInterface:
    config = config_from_dict({
        "agent": {"name": AGENT, "workdir": str(tmp_path / "agent")},
        "database": {"url": f"sqlite:///{tmp_path / 'agent.db'}", "connect_retries": 3, "retry_wait_s": 0.2},
        "prodmanager": {"url": url, "token": token},
        "components": {"settings": {"ProdMgrInterface": {
            "tick_s": 0.1, "http_timeout_s": 10.0, "http_retries": 0, "outage_backoff_max_s": 0.2}}},
    })
    wait_for_database(config)
    service = open_service(config)
    declare_subscriptions(config, service)
    pmi = ProdMgrInterface(config, service)
    pmi.setup()
    service.tx.run(lambda conn: store.upsert_site(conn, AGENT, "local", 2, 0, 0))
    return pmi


@pytest.fixture
def interface(tmp_path: Path, server: Server) -> Iterator[ProdMgrInterface]:
    pmi = make_interface(tmp_path, server.url, server.env.tokens["agent1"])
    yield pmi
    pmi.teardown()
    pmi.service.engine.dispose()
