"""`prodmanager notify` (the sender process) and `prodmanager notifications list|show|redeliver|
secret`, working on the database directly, as an operator (like `prodmanager token`)."""

from __future__ import annotations

import json
import logging
import signal
import threading
from pathlib import Path
from typing import Any

import click

from prodmanager.auth import Principal
from prodmanager.cli import _when
from prodmanager.models import Role
from prodrequest.spec import NOTIFY_EVENTS

OPERATOR = Principal("prodmanager-cli", Role.OPERATOR)
config_option = click.option(
    "--config",
    "config_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Notification settings (YAML): smtp, rules, secrets, schedule, thresholds.",
)


def _db_options(f: Any) -> Any:
    from prodmanager.cli import db_option, workdir_option

    return db_option(workdir_option(f))


def _service(db: str | None, workdir: str | None) -> Any:
    from prodmanager.cli import _database
    from prodmanager.notify.service import NotificationService

    return NotificationService(_database(db, workdir))


@click.command()
@_db_options
@config_option
@click.option("--once", is_flag=True, help="One pass (scan, expand, deliver due), then exit.")
@click.option("--log-level", default="info", show_default=True)
def notify(
    db: str | None, workdir: str | None, config_path: Path | None, once: bool, log_level: str
) -> None:
    """Send notifications from the outbox until SIGTERM or SIGINT."""
    from prodmanager.cli import _database
    from prodmanager.notify.config import NotifyConfig
    from prodmanager.notify.sender import Sender

    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s"
    )
    sender = Sender(_database(db, workdir), NotifyConfig.load(config_path))
    stop = threading.Event()
    if once:
        sender.tick()
        return
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    click.echo("prodmanager notify: sending", err=True)
    try:
        sender.run(stop)
    finally:
        sender.close()


@click.group()
def notifications() -> None:
    """Notifications: what was sent to whom, every attempt, redelivery."""


@notifications.command(name="list")
@_db_options
@click.option("--request", "request_id", type=int, default=None)
@click.option("--event", type=click.Choice(NOTIFY_EVENTS), default=None)
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def list_cmd(
    db: str | None,
    workdir: str | None,
    request_id: int | None,
    event: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """The newest notifications and how their deliveries stand."""
    items = _service(db, workdir).list(OPERATOR, request_id, event, limit)
    if as_json:
        click.echo(json.dumps([i.model_dump(mode="json") for i in items]))
        return
    for n in items:
        states = " ".join(f"{k}={v}" for k, v in sorted(n.deliveries.items())) or "not expanded"
        click.echo(
            f"{n.id:>6}  {_when(n.created_at)}  {n.event:<10} #{n.request_id} {n.request_name:<30}"
            f"  {states}"
        )


@notifications.command()
@_db_options
@click.argument("notification_id", type=int)
@click.option("--json", "as_json", is_flag=True)
def show(db: str | None, workdir: str | None, notification_id: int, as_json: bool) -> None:
    """One notification: why, its deliveries and every attempt."""
    from prodmanager.errors import ProdManagerError

    try:
        n = _service(db, workdir).show(OPERATOR, notification_id)
    except ProdManagerError as exc:
        raise click.ClickException(exc.message) from None
    if as_json:
        click.echo(n.model_dump_json())
        return
    click.echo(f"notification {n.id}: {n.event} for request #{n.request_id} {n.request_name}")
    click.echo(f"  {n.why}")
    click.echo(f"  act: {n.facts.get('act')}")
    for d in n.delivery_list:
        click.echo(f"  {d.channel} {d.target}: {d.state} after {d.attempts} attempt(s) [{d.message_id}]")
        for a in d.attempt_log:
            result = "ok" if a.ok else (a.error or "failed")
            click.echo(f"      {_when(a.at)}  {a.status or '-'}  {result}")


@notifications.command()
@_db_options
@click.argument("notification_id", type=int)
@click.option("--all", "everything", is_flag=True, help="Also the deliveries that got through.")
def redeliver(db: str | None, workdir: str | None, notification_id: int, everything: bool) -> None:
    """Send again what did not get through (the sender picks it up at its next pass)."""
    from prodmanager.errors import ProdManagerError

    try:
        n = _service(db, workdir).redeliver(OPERATOR, notification_id, everything)
    except ProdManagerError as exc:
        raise click.ClickException(exc.message) from None
    pending = sum(1 for d in n.delivery_list if d.state == "pending")
    click.echo(f"notification {n.id}: {pending} delivery(ies) pending")


@notifications.command()
@config_option
@click.argument("url")
def secret(config_path: Path | None, url: str) -> None:
    """Print the signing secret of a webhook endpoint (give it to the endpoint's owner)."""
    from prodmanager.notify.config import NotifyConfig

    found = NotifyConfig.load(config_path).webhook_secret(url)
    if found is None:
        raise click.ClickException("no secret: the configuration has no signing_key for it")
    click.echo(found)
