"""`prodAgentd`: operators start, stop, restart and inspect an agent's components.

    prodAgentd [--config FILE] start|stop|restart|status [--components A,B] [--json]
        (`start` also leaves a supervisor running that brings back components that die)
    prodAgentd [--config FILE] run COMPONENT          (foreground)
    prodAgentd [--config FILE] messages dead-letters|requeue ID|purge
    prodAgentd init NAME --token-file F [--workdir DIR] [--prodmanager URL] [--template FILE] [--db URL] [--start]
    prodAgentd [--config FILE] drain [--no-wait] [--timeout S] [--cancel]
"""

from __future__ import annotations

import json
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from prodagent.components.registry import component_class
from prodagent.config import AgentConfig, load_config
from prodagent.errors import ProdAgentError
from prodagent.runtime import daemon, watchlist

console = Console(width=None if sys.stdout.isatty() else 160)
PARALLEL = 16  # components stopped at once


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
    if ctx.invoked_subcommand != "init":  # init makes the configuration
        ctx.obj["config"] = load_config(config_path)


components_option = click.option("--components", help="Comma-separated component names (default: all enabled).")


@cli.command()
@components_option
@click.pass_context
def start(ctx: click.Context, components: str | None) -> None:
    """Start components as daemons (one process each) and the supervisor that brings them back.

    A component that another agent already runs under this agent's name is refused (exit 1).
    """
    from prodagent.runtime.runner import declare_subscriptions, open_service, wait_for_database

    config = _config(ctx)
    names = _selected(config, components)
    wait_for_database(config)
    service = open_service(config, pool_size=1)
    declare_subscriptions(config, service)
    service.engine.dispose()
    failed = False
    for name in names:
        # From a fork of this process, which holds no connection now and runs no other thread:
        # a new interpreter per component cost a second of imports each.
        result = daemon.start(config, name, fork=True)
        failed |= not result.ok
        if result.refused:
            watchlist.update_wanted(config, remove=[name])
        else:  # started, or failed to: the supervisor keeps trying
            watchlist.update_wanted(config, add=[name])
        label = "[green]ok[/]" if result.ok else ("[red]REFUSED[/]" if result.refused else "[red]FAILED[/]")
        console.print(f"{name:<18} {label}  {escape(result.text)}")
    if watchlist.wanted(config):
        ok, text = daemon.start_supervisor(config)
        failed |= not ok
        console.print(f"{'supervisor':<18} {'[green]ok[/]' if ok else '[red]FAILED[/]'}  {escape(text)}")
    sys.exit(1 if failed else 0)


@cli.command()
@components_option
@click.option("--timeout", type=float, help="Seconds between SIGTERM and SIGKILL (default: supervisor.stop_timeout_s).")
@click.pass_context
def stop(ctx: click.Context, components: str | None, timeout: float | None) -> None:
    """Stop components: SIGTERM, then SIGKILL after a grace period; returns when they are gone.

    The supervisor lets go of them first (and stops when it has nothing left to watch), so it
    does not bring back what is being stopped.
    """
    config = _config(ctx)
    names = _selected(config, components)
    left = watchlist.update_wanted(config, remove=names)
    failed = False
    if not left:
        ok, text = daemon.stop(config, daemon.SUPERVISOR, timeout)
        failed |= not ok
        console.print(f"{'supervisor':<18} {escape(text)}")
    with ThreadPoolExecutor(max_workers=PARALLEL) as pool:
        stopped = list(pool.map(lambda name: daemon.stop(config, name, timeout), names))
    for name, (ok, text) in zip(names, stopped, strict=True):
        failed |= not ok
        console.print(f"{name:<18} {escape(text)}")
    sys.exit(1 if failed else 0)


@cli.command()
@components_option
@click.pass_context
def restart(ctx: click.Context, components: str | None) -> None:
    """Stop, then start components."""
    try:
        ctx.invoke(stop, components=components)
    except SystemExit as exc:
        if exc.code:
            raise
    ctx.invoke(start, components=components)


@cli.command()
@click.argument("name")
@click.option("--token-file", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True,
              help="The agent token an operator created for NAME (prodmanager token create --role agent).")
@click.option("--workdir", type=click.Path(file_okay=False, path_type=Path), help="Default: ./NAME")
@click.option("--prodmanager", "url", help="ProdManager URL (default: the template's).")
@click.option("--template", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="An existing agent configuration to copy sites, batch and component settings from.")
@click.option("--db", "db_url", help="Database URL (default: SQLite in the work directory).")
@click.option("--start", "start_now", is_flag=True, help="Start the new agent's components at once.")
@click.pass_context
def init(ctx: click.Context, name: str, token_file: Path, workdir: Path | None, url: str | None,
         template: Path | None, db_url: str | None, start_now: bool) -> None:
    """Make a new agent instance NAME: configuration, database, registration with ProdManager."""
    from prodagent.cli.instance import make_instance, register

    path, config = make_instance(name, workdir or Path(name), url, token_file.read_text(), db_url, template)
    register(config)
    console.print(f"agent {name}: configuration {path}, database ready, registered with {config.prodmanager.url}")
    if start_now:
        ctx.obj["config"] = config
        ctx.invoke(start, components=None)


@cli.command()
@click.option("--wait/--no-wait", default=True, show_default=True,
              help="Wait until nothing is left, then stop the components.")
@click.option("--timeout", type=float, default=3600.0, show_default=True)
@click.option("--cancel", is_flag=True, help="Take work again.")
@click.pass_context
def drain(ctx: click.Context, wait: bool, timeout: float, cancel: bool) -> None:
    """Take no new work, give back what has not started, finish the rest, then stop."""
    import time

    from prodagent.jobs import drain as drain_store
    from prodagent.runtime.runner import open_service

    config = _config(ctx)
    service = open_service(config, pool_size=1)
    agent = config.agent.name
    if cancel:
        service.tx.run(lambda c: drain_store.cancel(c, agent))
        console.print(f"agent {agent}: takes work again")
        return
    service.tx.run(lambda c: drain_store.set_draining(c, agent, "prodAgentd drain"))
    console.print(f"agent {agent}: draining")
    if not wait:
        return
    deadline = time.monotonic() + timeout
    while any(left := service.tx.run(lambda c: drain_store.left(c, agent)).values()):
        if time.monotonic() > deadline:
            console.print(f"agent {agent}: not drained after {timeout:.0f} s: {left}")
            sys.exit(1)
        time.sleep(1.0)
    service.engine.dispose()
    console.print(f"agent {agent}: drained (no lease, no live job, every merged file reported); stopping")
    ctx.invoke(stop, components=None, timeout=None)


def _when(ts: float | None, now: float) -> str:
    if ts is None:
        return "-"
    delta = ts - now
    return f"in {delta:.0f}s" if delta > 0 else f"{-delta:.0f}s ago"


STATE_STYLE = {"alive": "[green]alive[/]", "starting": "[yellow]starting[/]", "stale": "[red]stale[/]"}


@cli.command()
@components_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def status(ctx: click.Context, components: str | None, as_json: bool) -> None:
    """Show each component: pid, state, heartbeat age, restarts, pending messages, dead letters.

    States: alive; starting (not yet registered); stale (the process is there but its heartbeat
    is older than messaging.heartbeat_stale_s: frozen or hung); dead. Exits 0 only when every
    requested component is alive or starting and the supervisor runs.
    """
    import time

    config = _config(ctx)
    rows = daemon.status(config, _selected(config, components))
    sup = daemon.supervisor_status(config)
    healthy = all(r.state in daemon.OK_STATES for r in rows) and sup.alive
    if as_json:
        click.echo(json.dumps({"agent": config.agent.name, "healthy": healthy, "supervisor": sup.as_dict(),
                               "components": [r.as_dict() for r in rows]}, indent=2))
    else:
        now = time.time()
        table = Table(title=f"agent {escape(config.agent.name)} ({escape(str(config.workdir))})")
        for col in ("component", "pid", "state", "heartbeat age", "restarts", "last exit", "next retry",
                    "pending", "dead letters"):
            table.add_column(col, no_wrap=True)
        for r in rows:
            if r.state == "dead":
                state = "[red]dead (stale pid file)[/]" if r.stale_pid_file else "[red]dead[/]"
            else:
                state = STATE_STYLE[r.state]
            age = "-" if r.heartbeat_age_s is None else f"{r.heartbeat_age_s:.1f}s"
            table.add_row(r.component, str(r.pid or "-"), state, age, str(r.restarts), _when(r.last_exit_at, now),
                          _when(r.next_retry_at, now), str(r.pending), str(r.dead_letters))
        console.print(table)
        for r in rows:
            if r.note and r.state not in daemon.OK_STATES:
                console.print(f"{r.component}: {escape(r.note)}")
        if sup.alive:
            console.print(f"supervisor: running (pid {sup.pid})")
        else:
            console.print("[red]supervisor: not running[/] (components that die stay dead; `start` starts it)")
    sys.exit(0 if healthy else 1)


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
