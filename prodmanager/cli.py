"""`prodmanager`: run the server, migrate its database, manage tokens.

    prodmanager serve [--db URL] [--host H] [--port P] [--lease-seconds S] [--input-prefix P]...
                      [--share GROUP=WEIGHT]...
    prodmanager db upgrade|current [--db URL]
    prodmanager token create --role requester|operator|agent --name NAME [--allow-commands]
    prodmanager token list|revoke ID [--db URL]

The database is `--db`, else $PRODMANAGER_DB_URL, else a SQLite file in the work directory
(`--workdir`, $PRODMANAGER_WORKDIR, default ./work/prodmanager).
"""

from __future__ import annotations

import json
import logging
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from prodmanager.errors import ProdManagerError
from prodmanager.models import Role

DEFAULT_WORKDIR = "work/prodmanager"


def resolve_db_url(db: str | None, workdir: str | None) -> str:
    if db:
        return db
    if os.environ.get("PRODMANAGER_DB_URL"):
        return os.environ["PRODMANAGER_DB_URL"]
    base = Path(workdir or os.environ.get("PRODMANAGER_WORKDIR") or DEFAULT_WORKDIR)
    return f"sqlite:///{base.resolve() / 'prodmanager.db'}"


db_option = click.option(
    "--db", "db", default=None, help="Database URL (sqlite:///... or mysql+pymysql://...)."
)
workdir_option = click.option(
    "--workdir", default=None, help="Work directory for the default SQLite file."
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")


@click.group()
def main() -> None:
    """ProdManager: request service and work distribution for prodagent."""


@main.command()
@db_option
@workdir_option
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8765, show_default=True, type=int)
@click.option("--lease-seconds", default=300.0, show_default=True, type=float, help="Lease length.")
@click.option("--max-lease-seconds", default=3600.0, show_default=True, type=float)
@click.option(
    "--input-prefix",
    "input_prefixes",
    multiple=True,
    default=["/store/"],
    show_default=True,
    help="Allowed prefix of input file names (repeatable; may be a URL: root://host//store/).",
)
@click.option(
    "--token-cache-seconds",
    default=0.0,
    show_default=True,
    type=float,
    help="Cache good tokens this long (a revoked token keeps working up to this long).",
)
@click.option(
    "--share",
    "share_items",
    multiple=True,
    help="Fair share of a request group, GROUP=WEIGHT (repeatable; groups not named weigh 1).",
)
@click.option("--log-level", default="info", show_default=True)
def serve(
    db: str | None,
    workdir: str | None,
    host: str,
    port: int,
    lease_seconds: float,
    max_lease_seconds: float,
    input_prefixes: tuple[str, ...],
    token_cache_seconds: float,
    share_items: tuple[str, ...],
    log_level: str,
) -> None:
    """Run ProdRequest and ProdManager (migrates the database first)."""
    import uvicorn

    from prodmanager import shares
    from prodmanager.app import ServerSettings, create_app

    try:
        fair_shares = shares.parse(share_items)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--share") from None

    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s"
    )
    settings = ServerSettings(
        db_url=resolve_db_url(db, workdir),
        lease_seconds=lease_seconds,
        max_lease_seconds=max(max_lease_seconds, lease_seconds),
        input_prefixes=tuple(input_prefixes),
        token_cache_s=token_cache_seconds,
        shares=fair_shares,
    )
    app = create_app(settings)
    click.echo(
        f"prodmanager serving on http://{host}:{port} (database {_safe(settings.db_url)})", err=True
    )
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=False)


@main.group(name="db")
def db_group() -> None:
    """Database schema."""


@db_group.command()
@db_option
@workdir_option
def upgrade(db: str | None, workdir: str | None) -> None:
    """Apply all migrations."""
    from prodmanager.db import migrate
    from prodmanager.db.engine import make_engine

    engine = make_engine(resolve_db_url(db, workdir))
    migrate.upgrade(engine)
    click.echo(f"schema at {migrate.current_revision(engine)}")


@db_group.command()
@db_option
@workdir_option
def current(db: str | None, workdir: str | None) -> None:
    """Print the schema revision (and the newest known one)."""
    from prodmanager.db import migrate
    from prodmanager.db.engine import make_engine

    engine = make_engine(resolve_db_url(db, workdir))
    click.echo(f"current {migrate.current_revision(engine)}, head {migrate.head_revision()}")


@main.group()
def token() -> None:
    """Bearer tokens (stored hashed; shown once)."""


@token.command()
@click.option("--role", required=True, type=click.Choice([r.value for r in Role]))
@click.option("--name", required=True, help="Who the token is for; requesters own requests by it.")
@click.option(
    "--allow-commands",
    is_flag=True,
    help="May submit arbitrary `command` payloads (run on every agent's worker nodes).",
)
@db_option
@workdir_option
@json_option
def create(
    role: str, name: str, allow_commands: bool, db: str | None, workdir: str | None, as_json: bool
) -> None:
    """Create a token and print it (it cannot be shown again)."""
    from prodmanager.auth import create_token

    try:
        raw = create_token(_database(db, workdir), name, role, allow_commands)
    except ProdManagerError as exc:
        raise click.ClickException(exc.message) from None
    if as_json:
        out = {"name": name, "role": role, "allow_commands": allow_commands, "token": raw}
        click.echo(json.dumps(out))
    else:
        click.echo(raw)


@token.command(name="list")
@db_option
@workdir_option
@json_option
def list_tokens(db: str | None, workdir: str | None, as_json: bool) -> None:
    """List tokens (names and roles; the tokens themselves are not stored)."""
    from prodmanager.db import queries as q

    rows = _database(db, workdir).read(q.list_tokens)
    items = [dict(r._mapping) for r in rows]
    if as_json:
        click.echo(json.dumps(items))
        return
    for t in items:
        state = "revoked" if t["revoked_at"] else "active"
        commands = "commands" if t["allow_commands"] else ""
        click.echo(
            f"{t['id']:>5}  {t['name']:<24} {t['role']:<10} {_when(t['created_at'])}  {state}"
            f"  {commands}".rstrip()
        )


@token.command()
@click.argument("token_id", type=int)
@db_option
@workdir_option
def revoke(token_id: int, db: str | None, workdir: str | None) -> None:
    """Revoke a token by id (servers refuse it at its next call, or after --token-cache-seconds)."""
    import time

    from prodmanager.db import queries as q

    n = _database(db, workdir).transaction(lambda conn: q.revoke_token(conn, token_id, time.time()))
    if not n:
        raise click.ClickException(f"no active token {token_id}")
    click.echo(f"revoked token {token_id}")


def _database(db: str | None, workdir: str | None) -> Any:
    from prodmanager.db import migrate
    from prodmanager.db.engine import Database

    database = Database(resolve_db_url(db, workdir))
    migrate.upgrade(database.engine)
    return database


def _safe(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _register_notifications() -> None:
    from prodmanager.notify.cli import notifications, notify

    main.add_command(notify)
    main.add_command(notifications)


_register_notifications()
