"""Configuration validation and the migrations: same schema on SQLite and MariaDB."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from prodagent.config import DEFAULT_CONFIG, load_config
from prodagent.db.engine import unsupported_server
from prodagent.db.migrate import VERSION_TABLE, head_revision, upgrade
from prodagent.db.schema import metadata
from prodagent.errors import ConfigError
from tests.agent_helpers import write_config


def test_default_config_loads_and_uses_sqlite_in_workdir(monkeypatch) -> None:
    monkeypatch.delenv("PRODAGENT_DB_URL", raising=False)
    config = load_config(DEFAULT_CONFIG)
    assert config.db_url == f"sqlite:///{config.workdir / 'prodagent.db'}"
    assert config.workdir.is_absolute() and config.workdir.name == "agent"


def test_env_overrides_database_url(monkeypatch) -> None:
    monkeypatch.setenv("PRODAGENT_DB_URL", "mysql+pymysql://u@h/db")
    assert load_config(DEFAULT_CONFIG).db_url == "mysql+pymysql://u@h/db"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"agent": {"nmae": "x"}}, "agent.nmae: unknown key"),
        ({"messaging": {"max_deliveries": 0}}, "messaging.max_deliveries"),
        ({"messaging": {"lease_s": "long"}}, "messaging.lease_s"),
        ({"database": []}, "database"),
        ({"agent": {"name": "has space"}}, "agent.name"),
        ({"bogus": 1}, "bogus: unknown key"),
    ],
)
def test_bad_config_names_key_and_file(tmp_path, raw, expected) -> None:
    path = write_config(tmp_path / "c.yaml", raw)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert expected in str(info.value) and str(path) in str(info.value)


def test_component_settings_are_validated_by_the_component(tmp_path) -> None:
    from prodagent.components.ping import PingSettings

    path = write_config(tmp_path / "c.yaml", {"components": {"settings": {"Ping": {"interval": 3}}}})
    with pytest.raises(ConfigError, match=r"components.settings.Ping.interval: unknown key"):
        load_config(path).component_settings("Ping", PingSettings)


def test_migrations_build_exactly_the_declared_schema(db_url) -> None:
    assert upgrade(db_url) == head_revision()
    assert upgrade(db_url) == head_revision()  # idempotent
    engine = sa.create_engine(db_url)
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE, "compare_type": False})
        diff = [d for d in compare_metadata(ctx, metadata) if not _is_foreign_table(d)]
        indexes = {ix["name"] for ix in sa.inspect(conn).get_indexes("ms_message")}
    engine.dispose()
    # Alembic cannot compare indexes with a DESC part; that one is checked by name.
    assert "ix_ms_message_claim" in indexes
    assert [d for d in diff if not _is_desc_index(d)] == []


def _is_desc_index(diff) -> bool:
    return diff[0] in ("add_index", "remove_index") and diff[1].name == "ix_ms_message_claim"


def _is_foreign_table(diff) -> bool:
    # Other parts of the system (ProdManager) may share the database; only our tables count.
    return diff[0] == "remove_table" or (diff[0] == "remove_index" and not diff[1].table.name.startswith(("ms_", "pa_")))


@pytest.mark.parametrize(("is_mariadb", "version", "refused"), [
    (True, (10, 5, 22), True),
    (True, (10, 6, 0), False),
    (True, (10, 11, 19), False),
    (False, (5, 7, 44), True),
    (False, (8, 0, 36), False),
])
def test_servers_too_old_for_the_message_statements_are_named(is_mariadb, version, refused) -> None:
    why = unsupported_server(is_mariadb, version)
    assert (why is not None) == refused
    if why:
        assert ("MariaDB" if is_mariadb else "MySQL") in why and ".".join(map(str, version)) in why


def test_this_mariadb_passes_the_version_check_and_runs_the_id_join(make_mysql_db) -> None:
    url = make_mysql_db()
    upgrade(url)  # checks the server first
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        ids = conn.execute(sa.text(
            "SELECT t.id FROM JSON_TABLE(:ids, '$[*]' COLUMNS (id BIGINT PATH '$')) AS t"
        ), {"ids": "[3,1,2]"}).scalars().all()
    engine.dispose()
    assert ids == [3, 1, 2]
