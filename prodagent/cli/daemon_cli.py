"""`prodAgentd`: operators start, stop, restart and inspect an agent's components.

    prodAgentd [--config FILE] start|stop|restart|status [--components A,B] [--json]
    prodAgentd [--config FILE] run COMPONENT          (foreground)
    prodAgentd [--config FILE] messages dead-letters|requeue ID|purge
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from prodagent.components.registry import component_class
from prodagent.config import AgentConfig, load_config
from prodagent.errors import ProdAgentError
from prodagent.runtime import daemon

console = Console(width=None if sys.stdout.isatty() else 160)


def _config(ctx: click.Context) -> AgentConfig:
    return ctx.obj["config"]


def _selected(config: AgentConfig, components: str | None) -> list[str]:
    if not components:
        return list(config.components.enabled)
    names = [c.strip() for c in components.split(",") if c.strip()]
    for name in names:
        component_class(config, name)  # an unknown name stops here with a clear message
    return names


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config_path", envvar="PRODAGENT_CONFIG", type=click.Path(),
              help="Agent configuration (YAML); default $PRODAGENT_CONFIG or etc/prodagent.yaml.")
@click.pass_context
def cli(ctx: click.Context, config_path: str | None) -> None:
    """Operate a prodagent instance."""
    ctx.ensure_object(dict)
    ctx.obj["config"] = load_config(config_path)


components_option = click.option("--components", help="Comma-separated component names (default: all enabled).")


@cli.command()
@components_option
@click.pass_context
def start(ctx: click.Context, components: str | None) -> None:
    """Start components as daemons (one process each)."""
    from prodagent.runtime.runner import declare_subscriptions, open_service, wait_for_database

    config = _config(ctx)
    names = _selected(config, components)
    wait_for_database(config)
    service = open_service(config, pool_size=1)
    declare_subscriptions(config, service)
    service.engine.dispose()
    failed = False
    for name in names:
        ok, text = daemon.start(config, name)
        failed |= not ok
        console.print(f"{name:<18} {'[green]ok[/]' if ok else '[red]FAILED[/]'}  {text}")
    sys.exit(1 if failed else 0)


@cli.command()
@components_option
@click.pass_context
def stop(ctx: click.Context, components: str | None) -> None:
    """Stop components: SIGTERM, then SIGKILL after a grace period."""
    config = _config(ctx)
    for name in _selected(config, components):
        _ok, text = daemon.stop(config, name)
        console.print(f"{name:<18} {text}")


@cli.command()
@components_option
@click.pass_context
def restart(ctx: click.Context, components: str | None) -> None:
    """Stop, then start components."""
    ctx.invoke(stop, components=components)
    ctx.invoke(start, components=components)


@cli.command()
@components_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def status(ctx: click.Context, components: str | None, as_json: bool) -> None:
    """Show each component: pid, alive, heartbeat age, pending messages, dead letters.

    Exits 0 only when every requested component is alive.
    """
    config = _config(ctx)
    rows = daemon.status(config, _selected(config, components))
    if as_json:
        click.echo(json.dumps({"agent": config.agent.name, "components": [r.as_dict() for r in rows]}, indent=2))
    else:
        table = Table(title=f"agent {config.agent.name} ({config.workdir})")
        for col in ("component", "pid", "state", "heartbeat age", "pending", "dead letters"):
            table.add_column(col, no_wrap=True)
        for r in rows:
            state = "[green]alive[/]" if r.alive else ("[red]dead (stale pid file)[/]" if r.stale_pid_file else "[red]dead[/]")
            age = "-" if r.heartbeat_age_s is None else f"{r.heartbeat_age_s:.1f}s"
            table.add_row(r.component, str(r.pid or "-"), state, age, str(r.pending), str(r.dead_letters))
        console.print(table)
    sys.exit(0 if all(r.alive for r in rows) else 1)


@cli.command()
@click.argument("component")
@click.pass_context
def run(ctx: click.Context, component: str) -> None:
    """Run one component in the foreground (logs also to stderr)."""
    from prodagent.runtime.logs import setup_logging
    from prodagent.runtime.runner import ComponentRunner

    config = _config(ctx)
    component_class(config, component)
    setup_logging(config, component, to_stderr=True)
    runner = ComponentRunner(config, component)
    runner.install_signal_handlers()
    runner.run()


@cli.group()
def messages() -> None:
    """Inspect and repair the message queues."""


@messages.command("dead-letters")
@click.option("--component")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def dead_letters(ctx: click.Context, component: str | None, as_json: bool) -> None:
    """List messages that failed too many times."""
    from prodagent.runtime.runner import open_service

    service = open_service(_config(ctx), pool_size=1)
    rows = service.dead_letters(component)
    if as_json:
        click.echo(json.dumps(rows, indent=2, default=str))
        return
    table = Table(title="dead letters")
    for col in ("id", "component", "type", "deliveries", "last error"):
        table.add_column(col)
    for r in rows:
        last = (r["last_error"] or "").strip().splitlines()
        table.add_row(str(r["id"]), r["component"], r["msg_type"], str(r["deliveries"]), last[-1] if last else "")
    console.print(table)


@messages.command()
@click.argument("message_id", type=int)
@click.pass_context
def requeue(ctx: click.Context, message_id: int) -> None:
    """Put a dead letter back in its component's queue."""
    from prodagent.runtime.runner import open_service

    if not open_service(_config(ctx), pool_size=1).requeue(message_id):
        raise click.ClickException(f"no dead letter with id {message_id}")
    click.echo(f"requeued {message_id}")


@messages.command()
@click.option("--id", "ids", type=int, multiple=True, help="Only these dead letters (default: all).")
@click.option("--history", is_flag=True, help="Also purge message history past its retention.")
@click.pass_context
def purge(ctx: click.Context, ids: tuple[int, ...], history: bool) -> None:
    """Drop dead letters (and expired history)."""
    from prodagent.runtime.runner import open_service

    service = open_service(_config(ctx), pool_size=1)
    click.echo(f"dropped {service.purge_dead_letters(list(ids) or None)} dead letter(s)")
    if history:
        click.echo(f"purged {service.purge_history()} history row(s)")


def main(argv: list[str] | None = None) -> Any:
    try:
        return cli.main(args=argv, prog_name="prodAgentd", standalone_mode=True)
    except ProdAgentError as exc:
        click.echo(f"prodAgentd: {exc}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
