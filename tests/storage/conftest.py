"""A real XRootD server for the storage tests, started with `scripts/xrootd.sh` on a free port.

The server's files live under a directory of /tmp (the server runs as its own user when the
tests run as root, and pytest's tmp_path is private to root). Tests skip, saying why, only when
XRootD cannot be installed or started here.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "xrootd.sh"


@dataclass
class XRootDServer:
    port: int
    dir: Path

    @property
    def url(self) -> str:
        return f"root://127.0.0.1:{self.port}"

    def pfn_rule(self, area: str = "disk") -> str:
        return f"{self.url}//{area}/{{lfn}}"

    def local(self, area: str = "disk") -> Path:
        """Where the server keeps an area's files on this machine (tests tamper with them)."""
        return self.dir / "data" / area

    def _run(self, action: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(SCRIPT), action, str(self.port), str(self.dir)],
                              capture_output=True, text=True, timeout=900)

    def start(self) -> None:
        done = self._run("start")
        if done.returncode != 0:
            raise RuntimeError(f"xrootd.sh start failed: {done.stderr.strip()}")

    def stop(self) -> None:
        self._run("stop")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server() -> XRootDServer:
    """A new server of its own; skips the test when XRootD cannot be installed or started."""
    server = XRootDServer(_free_port(), Path(tempfile.mkdtemp(prefix="pa-xrootd-")))
    try:
        server.start()
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
        shutil.rmtree(server.dir, ignore_errors=True)
        pytest.skip(f"no XRootD server: {exc}")
    return server


@pytest.fixture(scope="session")
def xrootd_server() -> Iterator[XRootDServer]:
    server = start_server()
    yield server
    server.stop()
    shutil.rmtree(server.dir, ignore_errors=True)


@pytest.fixture
def own_xrootd_server() -> Iterator[XRootDServer]:
    """A server for one test alone (one that stops and restarts it)."""
    server = start_server()
    yield server
    server.stop()
    shutil.rmtree(server.dir, ignore_errors=True)
