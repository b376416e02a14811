"""Shared test fixtures: real databases (SQLite files and a fresh MariaDB database per test).

MariaDB is found at $PRODAGENT_TEST_MYSQL (default mysql+pymysql://root@127.0.0.1:3306).
Outside CI a missing server skips the MariaDB variants with the reason; in CI (CI=true) it fails.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator

import pytest
import sqlalchemy as sa

MYSQL_SERVER = os.environ.get("PRODAGENT_TEST_MYSQL", "mysql+pymysql://root@127.0.0.1:3306")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


# Tests of a minute or more (whole stacks, live servers, a browser). Run first, so that the two
# workers end on short tests and a long one never starts when everything else is done.
LONG_FIRST = (
    "tests/e2e/", "tests/batch/test_slurm_live.py", "tests/storage/test_production_on_xrootd.py",
    "tests/storage/test_stageout.py", "tests/messaging/test_prodagentd.py", "tests/runtime/test_demo_interrupt.py",
    "tests/web/test_monitor_browser.py", "tests/runtime/test_supervisor.py", "tests/messaging/test_processes.py",
    "tests/runtime/test_stop_and_stale.py", "tests/runtime/test_liveness.py",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: not item.nodeid.startswith(LONG_FIRST))  # stable: file order kept within each


def _mysql_admin() -> sa.Engine:
    return sa.create_engine(MYSQL_SERVER + "/", poolclass=sa.pool.NullPool)


def mysql_available() -> str | None:
    """None when MariaDB answers, otherwise the reason it does not."""
    try:
        with _mysql_admin().connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        return None
    except Exception as exc:  # noqa: BLE001 - any failure means "not reachable"
        return f"MariaDB not reachable at {MYSQL_SERVER}: {exc.__class__.__name__}: {exc}"


@pytest.fixture(scope="session")
def mysql_server() -> str:
    reason = mysql_available()
    if reason:
        if IN_CI:
            pytest.fail(reason)
        pytest.skip(reason)
    return MYSQL_SERVER


@pytest.fixture
def make_mysql_db(mysql_server: str) -> Iterator[Callable[[], str]]:
    """Factory: a new empty MariaDB database per call; dropped after the test."""
    created: list[str] = []
    admin = _mysql_admin()

    def make() -> str:
        name = f"pa_t_{uuid.uuid4().hex[:12]}"
        with admin.begin() as conn:
            conn.execute(sa.text(f"CREATE DATABASE {name} CHARACTER SET utf8mb4"))
        created.append(name)
        return f"{mysql_server}/{name}"

    yield make
    with admin.begin() as conn:
        for name in created:
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name}"))
    admin.dispose()


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'test.db'}"


@pytest.fixture(params=["sqlite", "mariadb"])
def db_url(request, tmp_path) -> str:
    """Each test using this runs once on a SQLite file and once on a fresh MariaDB database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'test.db'}"
    return request.getfixturevalue("make_mysql_db")()
