"""`prodagent`: inspect and steer an agent's work.

    prodagent [--config FILE] db upgrade
    prodagent jobs list [--state S] [--request R] [--error-class C] [--json]
    prodagent jobs show ID [--json]
    prodagent jobs resubmit|kill [ID ...] [--request R] [--error-class C]
    prodagent files list [--dataset ID] [--kind K] [--state S] [--json]
    prodagent files show ID|LFN [--json]
    prodagent datasets list [--json]
    prodagent datasets remerge DATASET_ID
    prodagent datasets show ID [--json]
    prodagent summary [--json]
    prodagent sites list [--json]
    prodagent sites history [SITE] [--json]
    prodagent sites force SITE STATE --reason TEXT
    prodagent sites release SITE --reason TEXT
    prodagent sizing [--json]
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

import click
import sqlalchemy as sa
from rich.console import Console
from rich.table import Table

from prodagent.config import AgentConfig, load_config
from prodagent.errors import ProdAgentError
from prodagent.jobs import site_states, states, store, summary
from prodagent.messaging.types import OPERATOR

console = Console(width=None if sys.stdout.isatty() else 200)


def _config(ctx: click.Context) -> AgentConfig:
    return ctx.obj["config"]


def _service(ctx: click.Context):  # type: ignore[no-untyped-def]
    from prodagent.runtime.runner import open_service

    return open_service(_config(ctx), pool_size=1)


def _print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config_path", envvar="PRODAGENT_CONFIG", type=click.Path())
@click.pass_context
def cli(ctx: click.Context, config_path: str | None) -> None:
    """Inspect and steer a prodagent instance."""
    ctx.ensure_object(dict)
    ctx.obj["config"] = load_config(config_path)


@cli.group()
def db() -> None:
    """The agent's database."""


@db.command()
@click.pass_context
def upgrade(ctx: click.Context) -> None:
    """Create or upgrade the schema to the newest migration."""
    from prodagent.db.migrate import upgrade as run_upgrade

    click.echo(f"database at revision {run_upgrade(_config(ctx).db_url)}")


@cli.group()
def jobs() -> None:
    """List, inspect, resubmit and kill jobs."""


def _select_jobs(conn: sa.Connection, agent: str, ids: tuple[int, ...], state: str | None,
                 request: str | None, error_class: str | None) -> list[Any]:
    return store.select_jobs(conn, agent, ids, state.split(",") if state else (), request, error_class)


JOB_COLUMNS = ("id", "name", "job_type", "state", "retry", "site", "error_class", "events_done")


@jobs.command("list")
@click.option("--state", help="Comma-separated states, e.g. paused,exhausted.")
@click.option("--request")
@click.option("--error-class")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def jobs_list(ctx: click.Context, state: str | None, request: str | None, error_class: str | None, as_json: bool) -> None:
    """List jobs."""
    service = _service(ctx)
    rows = service.tx.run(lambda c: _select_jobs(c, service.agent, (), state, request, error_class))
    if as_json:
        _print_json([dict(r._mapping) for r in rows])
        return
    table = Table(title=f"{len(rows)} job(s)")
    for col in JOB_COLUMNS:
        table.add_column(col, no_wrap=True)
    for r in rows:
        table.add_row(*(str(getattr(r, c) if getattr(r, c) is not None else "-") for c in JOB_COLUMNS))
    console.print(table)


@jobs.command("show")
@click.argument("job_id", type=int)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def jobs_show(ctx: click.Context, job_id: int, as_json: bool) -> None:
    """One job with every transition it went through (and why)."""
    service = _service(ctx)
    found = service.tx.run(lambda c: (store.jobs(c, [job_id]), store.history(c, job_id)))
    if not found[0]:
        raise click.ClickException(f"no job {job_id}")
    job = dict(found[0][0]._mapping)
    trail = [dict(t._mapping) for t in found[1]]
    if as_json:
        _print_json({"job": job, "transitions": trail})
        return
    for key, value in job.items():
        console.print(f"[bold]{key:>13}[/] {value}")
    table = Table(title="transitions")
    for col in ("at", "from", "to", "retry", "reason"):
        table.add_column(col)
    import datetime as dt

    for t in trail:
        when = dt.datetime.fromtimestamp(t["at"]).strftime("%H:%M:%S.%f")[:-3]
        table.add_row(when, t["from_state"] or "-", t["to_state"], str(t["retry"]), t["reason"] or "")
    console.print(table)


def _operator_action(ctx: click.Context, ids: tuple[int, ...], request: str | None, error_class: str | None,
                     allowed: frozenset[str], msg_type: str, reason: str,
                     record: Callable[[sa.Connection, list[int]], list[int]] | None = None) -> None:
    """Publish `msg_type` for the chosen jobs; with `record`, first do in the same transaction
    what the message asks (so a lost message delays the work, never loses it): the ids it returns
    are those published."""
    if not (ids or request or error_class):
        raise click.UsageError("name jobs by id, --request or --error-class")
    service = _service(ctx)

    def work(conn: sa.Connection) -> list[int]:
        chosen = [j.id for j in _select_jobs(conn, service.agent, ids, None, request, error_class) if j.state in allowed]
        if chosen and record is not None:
            chosen = record(conn, chosen)
        if chosen:
            service.publish(conn, msg_type, {"job_ids": chosen, "reason": reason}, source=OPERATOR)
        return chosen

    chosen = service.tx.run(work)
    click.echo(f"{msg_type}: {len(chosen)} job(s) {chosen[:20]}{' ...' if len(chosen) > 20 else ''}")


@jobs.command("resubmit")
@click.argument("job_ids", type=int, nargs=-1)
@click.option("--request")
@click.option("--error-class")
@click.pass_context
def jobs_resubmit(ctx: click.Context, job_ids: tuple[int, ...], request: str | None, error_class: str | None) -> None:
    """Give paused or exhausted jobs another attempt."""
    _operator_action(ctx, job_ids, request, error_class, states.NEEDS_OPERATOR, "RetryJob", "resubmitted by an operator")


@jobs.command("kill")
@click.argument("job_ids", type=int, nargs=-1)
@click.option("--request")
@click.option("--error-class")
@click.pass_context
def jobs_kill(ctx: click.Context, job_ids: tuple[int, ...], request: str | None, error_class: str | None) -> None:
    """Kill jobs (in the batch system too) and stop retrying them.

    The jobs are `killed` at once, their batch jobs marked for JobSubmitter to remove; KillJobs
    is published to have it done at once (lost, it is done at JobSubmitter's next tick)."""
    why = "killed by an operator"
    _operator_action(ctx, job_ids, request, error_class, store.KILLABLE, "KillJobs", why,
                     record=lambda conn, chosen: store.kill_jobs(conn, chosen, why).ids)


@cli.group()
def files() -> None:
    """Files the agent produced."""


@files.command("list")
@click.option("--dataset", type=int)
@click.option("--kind", type=click.Choice(["unmerged", "merged"]))
@click.option("--state")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def files_list(ctx: click.Context, dataset: int | None, kind: str | None, state: str | None, as_json: bool) -> None:
    """List files with size, checksum, events and state."""
    rows = _service(ctx).tx.run(lambda c: summary.files(c, dataset, kind, state))
    if as_json:
        _print_json(rows)
        return
    table = Table(title=f"{len(rows)} file(s)")
    for col in ("id", "lfn", "kind", "state", "events", "size", "adler32"):
        table.add_column(col, no_wrap=col != "lfn")
    for r in rows:
        table.add_row(str(r["id"]), r["lfn"], r["kind"], r["state"], str(r["events"]), str(r["size"]), r["adler32"])
    console.print(table)


@files.command("show")
@click.argument("file")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def files_show(ctx: click.Context, file: str, as_json: bool) -> None:
    """One file (by id or LFN) with its replicas (element, physical name, checksum, state), the
    unmerged files merged into it and the files of other tasks it derives from."""
    found = _service(ctx).tx.run(lambda c: summary.file_with_replicas(c, file))
    if found is None:
        raise click.ClickException(f"no file {file}")
    if as_json:
        _print_json(found)
        return
    for key, value in found["file"].items():
        console.print(f"[bold]{key:>13}[/] {value}")
    for key in ("parents", "derived_from"):
        console.print(f"[bold]{key:>13}[/] " + ("\n" + " " * 14).join(found[key] or ["-"]))
    table = Table(title=f"{len(found['replicas'])} replica(s)")
    for col in ("element", "role", "state", "size", "adler32", "pfn"):
        table.add_column(col, no_wrap=col != "pfn")
    for r in found["replicas"]:
        table.add_row(r["element"], r["role"], r["state"], str(r["size"]), r["adler32"], r["pfn"])
    console.print(table)


@cli.group()
def datasets() -> None:
    """Datasets and their merged output."""


@datasets.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def datasets_list(ctx: click.Context, as_json: bool) -> None:
    """Datasets with events produced and merged."""
    service = _service(ctx)
    rows = service.tx.run(lambda c: summary.datasets(c, service.agent))
    if as_json:
        _print_json(rows)
        return
    table = Table(title="datasets")
    for col in ("id", "name", "request", "produced", "merged", "merged files", "merged bytes"):
        table.add_column(col)
    for r in rows:
        table.add_row(str(r["id"]), r["name"], r["request_id"], str(r["events_produced"]), str(r["events_merged"]),
                      str(r["merged_files"]), str(r["merged_bytes"]))
    console.print(table)


@datasets.command("show")
@click.argument("dataset_id", type=int)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def datasets_show(ctx: click.Context, dataset_id: int, as_json: bool) -> None:
    """A dataset's runs: files by state with their events, runs merged, the merge gate of each
    (`ready`, or `needs_attention` until an operator decides, for requests merged per run)."""
    service = _service(ctx)
    rows = service.tx.run(lambda c: summary.dataset_runs(c, service.agent, dataset_id))
    if as_json:
        _print_json(rows)
        return
    table = Table(title=f"dataset {dataset_id}: {len(rows)} run(s)")
    for col in ("run", "gate", "files (kind/state: files, events)"):
        table.add_column(col)
    for r in rows:
        files = ", ".join(f"{k}: {v['files']}, {v['events']} ev" for k, v in sorted(r["files"].items()))
        table.add_row(str(r["run"]), r["gate"] or "-", files)
    console.print(table)


@datasets.command("remerge")
@click.argument("dataset_id", type=int)
@click.pass_context
def datasets_remerge(ctx: click.Context, dataset_id: int) -> None:
    """Give the inputs of failed merge jobs back, to be merged again at the next grouping."""
    from prodagent.jobs.merging import remerge

    service = _service(ctx)
    done = service.tx.run(lambda c: remerge(c, service.agent, dataset_id))
    click.echo(f"{done.files} file(s) from merge job(s) {done.merge_job_ids} will be merged again")


@cli.command("summary")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def summary_cmd(ctx: click.Context, as_json: bool) -> None:
    """Jobs by state, error-handler decisions by class, datasets."""
    service = _service(ctx)
    data = service.tx.run(lambda c: {
        "jobs": summary.jobs_by_state(c, service.agent),
        "decisions": summary.decisions_by_class(c, service.agent),
        "datasets": summary.datasets(c, service.agent),
    })
    if as_json:
        _print_json(data)
        return
    console.print(data)


@cli.group()
def sites() -> None:
    """Site health: circuit-breaker states, their history, excluded nodes; operator overrides."""


@sites.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def sites_list(ctx: click.Context, as_json: bool) -> None:
    """Each site's state, since when and why, and its excluded nodes."""
    import time

    from prodagent.jobs import site_store

    service = _service(ctx)
    now = time.time()
    health, excluded = service.tx.run(lambda c: (site_store.health(c, service.agent),
                                                 site_store.excluded_nodes(c, service.agent, now)))
    rows = [{"site": s, "state": r.state, "forced": bool(r.forced), "since": r.since, "reason": r.reason,
             "excluded_nodes": list(excluded.get(s, ()))} for s, r in health.items()]
    if as_json:
        _print_json(rows)
        return
    table = Table(title="sites")
    for col in ("site", "state", "forced", "since", "reason", "excluded nodes"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["site"], r["state"], "yes" if r["forced"] else "", time.strftime(
            "%Y-%m-%d %H:%M:%S", time.gmtime(r["since"])), r["reason"] or "", ", ".join(r["excluded_nodes"]))
    console.print(table)


@sites.command("history")
@click.argument("site", required=False)
@click.option("--limit", type=click.IntRange(1, 10000), default=100)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def sites_history(ctx: click.Context, site: str | None, limit: int, as_json: bool) -> None:
    """Every recorded change (newest first) with its reason and figures."""
    from prodagent.jobs import site_store

    service = _service(ctx)
    rows = service.tx.run(lambda c: site_store.events(c, service.agent, site, limit))
    data = [{"at": r.at, "site": r.site, "node": r.node, "from": r.from_state, "to": r.to_state,
             "reason": r.reason, "figures": json.loads(r.figures)} for r in rows]
    if as_json:
        _print_json(data)
        return
    for d in data:
        where = d["site"] + (f"/{d['node']}" if d["node"] else "")
        click.echo(f"{d['at']:.0f} {where}: {d['from'] or '-'} -> {d['to']}: {d['reason']} {d['figures']}")


@sites.command("force")
@click.argument("site")
@click.argument("state", type=click.Choice(sorted(site_states.ALL_STATES)))
@click.option("--reason", required=True)
@click.pass_context
def sites_force(ctx: click.Context, site: str, state: str, reason: str) -> None:
    """Force a site's state; it stays until `sites release`."""
    from prodagent.jobs.site_health import force

    service = _service(ctx)
    service.tx.run(lambda c: force(c, service.agent, site, state, reason))
    click.echo(f"site {site}: forced {state}")


@sites.command("release")
@click.argument("site")
@click.option("--reason", required=True)
@click.pass_context
def sites_release(ctx: click.Context, site: str, reason: str) -> None:
    """Give a forced site back to the automatic breaker (from its current state)."""
    from prodagent.jobs.site_health import force

    service = _service(ctx)
    state = service.tx.run(lambda c: force(c, service.agent, site, None, reason))
    click.echo(f"site {site}: released in state {state}")


@cli.command("sizing")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def sizing_cmd(ctx: click.Context, as_json: bool) -> None:
    """per_job auto: each request's state, estimate, the figures behind it and the formula."""
    from prodagent.jobs import sizing_store

    service = _service(ctx)
    rows = service.tx.run(lambda c: sizing_store.all_of(c, service.agent))
    data = [{"request": r.request_id, "state": r.state, "events_per_job": r.events_per_job,
             "memory_mb": r.memory_mb, "time_s": r.time_s, "reason": r.reason,
             "figures": json.loads(r.figures), "formula": r.formula} for r in rows]
    if as_json:
        _print_json(data)
        return
    for d in data:
        click.echo(f"request {d['request']}: {d['state']}" + (f" ({d['reason']})" if d["reason"] else ""))
        click.echo(f"  events/job {d['events_per_job']}, memory {d['memory_mb']} MB, time {d['time_s']} s")
        click.echo(f"  figures: {d['figures']}")
        click.echo(f"  formula: {d['formula']}")


def main(argv: list[str] | None = None) -> Any:
    try:
        return cli.main(args=argv, prog_name="prodagent", standalone_mode=True)
    except ProdAgentError as exc:
        click.echo(f"prodagent: {exc}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
