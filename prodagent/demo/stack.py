"""Start and stop a whole production stack: a ProdManager server and one agent's daemons.

Used by the main job (`python -m prodagent.demo`) and by the end-to-end tests, so both run the
same real processes: `prodmanager serve`, `prodAgentd start`, the local executor's payloads.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
import yaml

from prodagent.config import AgentConfig, load_config
from prodagent.runtime import pidfiles
from prodmanager.client import ProdManagerClient


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def prodmanager_cmd() -> list[str]:
    """The `prodmanager` command of this interpreter's environment."""
    return [sys.executable, "-c", "import sys; from prodmanager.cli import main; sys.exit(main())"]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PRODAGENT_DB_URL", None)
    env.pop("PRODAGENT_CONFIG", None)
    return env


@dataclass
class Manager:
    """A `prodmanager serve` process with its database and tokens."""

    workdir: Path
    db_url: str
    port: int = field(default_factory=free_port)
    lease_s: float = 60.0
    input_prefixes: tuple[str, ...] = ()  # where processing input may lie (default: /store/)
    shares: dict[str, float] = field(default_factory=dict)  # fair shares: `--share GROUP=WEIGHT`
    proc: subprocess.Popen[bytes] | None = None
    tokens: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def token(self, role: str, name: str) -> str:
        key = f"{role}:{name}"
        if key not in self.tokens:
            out = subprocess.run(
                [*prodmanager_cmd(), "token", "create", "--role", role, "--name", name,
                 "--db", self.db_url, "--json"],
                capture_output=True, text=True, env=_env(), check=True,
            )
            self.tokens[key] = json.loads(out.stdout)["token"]
        return self.tokens[key]

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = open(self.workdir / "prodmanager.log", "ab")  # noqa: SIM115 - owned by the child
        self.proc = subprocess.Popen(
            [*prodmanager_cmd(), "serve", "--db", self.db_url, "--port", str(self.port),
             "--lease-seconds", str(self.lease_s), "--log-level", "warning",
             *(a for p in self.input_prefixes for a in ("--input-prefix", p)),
             *(arg for g, w in self.shares.items() for arg in ("--share", f"{g}={w}"))],
            stdout=log, stderr=subprocess.STDOUT, env=_env(), start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"prodmanager serve exited; see {self.workdir / 'prodmanager.log'}")
            try:
                httpx.get(self.url + "/api/v1/health", timeout=1.0)
                return
            except httpx.HTTPError:
                time.sleep(0.2)
        raise RuntimeError("prodmanager serve did not answer within 60 s")

    def client(self, role: str = "requester", name: str = "demo") -> ProdManagerClient:
        return ProdManagerClient(self.url, self.token(role, name))

    def stop(self) -> str | None:
        """Stop the server; what was stopped (None if it was not running)."""
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            return f"ProdManager (pid {self.proc.pid})"
        return None


@dataclass
class AgentProcesses:
    """One agent: its config file and its daemons, driven through `prodAgentd`."""

    config_path: Path

    @property
    def config(self) -> AgentConfig:
        return load_config(self.config_path)

    def ctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        out = subprocess.run(
            [sys.executable, "-m", "prodagent.cli.daemon_cli", "--config", str(self.config_path), *args],
            capture_output=True, text=True, env=_env(), timeout=120, start_new_session=True,
        )
        if check and out.returncode != 0:
            raise RuntimeError(f"prodAgentd {' '.join(args)} failed:\n{out.stdout}\n{out.stderr}")
        return out

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "prodagent.cli.agent_cli", "--config", str(self.config_path), *args],
            capture_output=True, text=True, env=_env(), timeout=120, start_new_session=True,
        )

    def start(self, components: str | None = None) -> None:
        self.ctl("start", *(["--components", components] if components else []))

    def stop(self) -> str:
        """`prodAgentd stop`: the supervisor, then every component; its report of what it stopped."""
        out = self.ctl("stop", check=False)
        return out.stdout + out.stderr


def stop_leftovers(root: Path, grace_s: float = 5.0) -> list[str]:
    """Stop every process still running from under `root`, except this one; what was stopped.

    Payloads outlive the agent on purpose (detached launchers, like jobs in a batch system), and
    a launcher that ends starts the next queued job: so look again until nothing is left.
    """
    stopped: list[str] = []
    for _round in range(10):
        procs = _running_under(root)
        if not procs:
            break
        for proc, what in procs:
            stopped.append(f"{what} (pid {proc.pid})")
            _signal_group(proc, signal.SIGTERM)
        if not _wait_gone([p for p, _ in procs], grace_s):
            for proc, _cmd in procs:
                _signal_group(proc, signal.SIGKILL)
            _wait_gone([p for p, _ in procs], grace_s)
    return stopped


def _running_under(root: Path) -> list[tuple[psutil.Process, str]]:
    prefix = f"{root}{os.sep}"
    found = []
    for proc in psutil.process_iter(["pid", "cmdline", "status"]):
        args = pidfiles.process_argv(proc.info["cmdline"] or [])
        if proc.info["pid"] == os.getpid() or proc.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        if any(arg == str(root) or prefix in arg for arg in args):
            module = args[args.index("-m") + 1] if "-m" in args[:-1] else Path(args[0]).name
            found.append((proc, module))
    return found


def _signal_group(proc: psutil.Process, sig: int) -> None:
    with contextlib.suppress(psutil.Error, OSError):
        if os.getpgid(proc.pid) == proc.pid:  # a launcher or payload leads its own group
            os.killpg(proc.pid, sig)
        proc.send_signal(sig)


def _wait_gone(procs: list[psutil.Process], timeout_s: float) -> bool:
    from prodagent.runtime.pidfiles import gone

    deadline = time.monotonic() + timeout_s
    while not all(not p.is_running() or gone(p.pid) for p in procs):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)
    return True


def write_agent_config(path: Path, workdir: Path, manager: Manager, db_url: str | None = None,
                       slots: int = 2, name: str = "agent1", settings: dict[str, Any] | None = None,
                       batch: dict[str, Any] | None = None, storage: dict[str, Any] | None = None,
                       sites: list[dict[str, Any]] | None = None) -> Path:
    """An agent config for a quick production: fast ticks, the local executor (and, given
    `storage`, that section: outputs staged out to storage elements; given `sites`, those)."""
    component_settings = {
        "ProdMgrInterface": {"tick_s": 1.0, "queue_factor": 1.0},
        "ResourceMonitor": {"tick_s": 2.0},
        "JobSubmitter": {"tick_s": 1.0},
        "JobTracker": {"tick_s": 1.0},
        "MergeSensor": {"tick_s": 2.0},
    }
    for name_, extra in (settings or {}).items():
        component_settings.setdefault(name_, {}).update(extra)
    raw = {
        "agent": {"name": name, "workdir": str(workdir)},
        "database": {"url": db_url},
        "messaging": {"poll_max_s": 0.2, "heartbeat_s": 2.0, "retry_backoff_s": 0.5},
        "batch": batch or {"plugin": "local", "options": {"slots": slots, "enforce_memory": False}},
        "prodmanager": {"url": manager.url, "token": manager.token("agent", name)},
        "components": {"settings": component_settings},
    }
    if storage is not None:
        raw["storage"] = storage
    if sites:
        raw["sites"] = sites
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path
