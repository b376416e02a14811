"""`prodrequest`: submit and follow production requests.

    prodrequest [--url URL] [--token TOKEN] submit FILE | list [--state S] | show ID |
        watch ID | abort ID | pause ID | resume ID | close ID | clone ID | allocations ID |
        runs ID | run ID RUN accept|drop|reprocess

The server and token come from --url/--token or $PRODMANAGER_URL/$PRODMANAGER_TOKEN. Every command
takes --json (machine-readable output on stdout; errors as a JSON object and exit code 1).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import click
from pydantic import BaseModel
from rich.console import Console, Group
from rich.live import Live
from rich.text import Text

from prodmanager.client import ProdManagerClient
from prodmanager.errors import ProdManagerError
from prodmanager.text import printable
from prodrequest import render

DEFAULT_URL = "http://127.0.0.1:8765"
DONE_STATES = frozenset({"closed", "aborted", "failed"})

json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
reason_option = click.option("--reason", default="", help="Why (kept in the request's history).")


class Context:
    def __init__(self, url: str, token: str | None) -> None:
        self.url = url
        self.token = token

    def client(self) -> ProdManagerClient:
        return ProdManagerClient(self.url, self.token, retries=2)


@click.group()
@click.option("--url", envvar="PRODMANAGER_URL", default=DEFAULT_URL, show_default=True)
@click.option(
    "--token", envvar="PRODMANAGER_TOKEN", default=None, help="Bearer token ($PRODMANAGER_TOKEN)."
)
@click.pass_context
def main(ctx: click.Context, url: str, token: str | None) -> None:
    """Submit and follow production requests on a ProdManager server."""
    ctx.obj = Context(url, token)


def _run(as_json: bool, call: Any) -> Any:
    """Run a client call; print errors (as JSON with --json) and exit 1 on failure."""
    try:
        return call()
    except ProdManagerError as exc:
        _fail(exc, as_json)


def _fail(exc: ProdManagerError, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps({"error": exc.code, "detail": exc.message, **exc.details}))
    else:
        click.echo(f"error: {printable(exc.message, 2000)}", err=True)
        for err in exc.details.get("errors") or []:
            path, message = (
                printable(str(err.get("path")), 300),
                printable(str(err.get("message")), 500),
            )
            click.echo(f"  {path}: {message}", err=True)
        omitted = exc.details.get("errors_omitted")
        if omitted:
            click.echo(f"  ... and {omitted} more error(s)", err=True)
    sys.exit(1)


def _emit(value: BaseModel | list[Any], as_json: bool, human: Any) -> None:
    if as_json:
        if isinstance(value, list):
            click.echo(json.dumps([v.model_dump(mode="json") for v in value]))
        else:
            click.echo(value.model_dump_json())
    else:  # a str is stored text too (names): shown as written, never as Rich markup
        Console().print(Text(human) if isinstance(human, str) else human)


@main.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@json_option
@click.pass_obj
def submit(obj: Context, file: Path, as_json: bool) -> None:
    """Submit the workflow in FILE (YAML or JSON)."""
    with obj.client() as client:
        result = _run(as_json, lambda: client.submit(file.read_bytes()))
    verb = "submitted" if result.created else "already submitted"
    r = result.request
    _emit(
        result,
        as_json,
        f"{verb}: request {r.id} {r.name} ({r.total_jobs} jobs, {r.total_events:,} events)",
    )


@main.command(name="list")
@click.option("--state", "states", multiple=True, help="Only requests in this state (repeatable).")
@click.option("--owner", default=None)
@json_option
@click.pass_obj
def list_cmd(obj: Context, states: tuple[str, ...], owner: str | None, as_json: bool) -> None:
    """List requests, newest first."""
    with obj.client() as client:
        items = _run(as_json, lambda: client.list(list(states), owner=owner))
    _emit(items, as_json, render.request_table(items))


@main.command()
@click.argument("request_id", type=int)
@json_option
@click.pass_obj
def show(obj: Context, request_id: int, as_json: bool) -> None:
    """Show a request: state, counters, history (and the runs of a processing request; for a
    chained request, its producer's progress beside its own; for `events.per_job: auto`, each
    agent's job sizing: the estimate, the figures behind it and the formula)."""
    with obj.client() as client:
        detail = _run(as_json, lambda: client.get(request_id))
        found = _run(as_json, lambda: client.runs(request_id)) if detail.kind == "processing" else []
        producer = _producer(client, detail, as_json)
    parts = [render.request_detail(detail)]
    if producer is not None:
        parts.append(render.chain_table([("input", *producer), ("this", detail, found)]))
    if found:
        parts.append(render.run_table(found))
    if detail.sizing:
        parts.append(render.sizing_detail(detail.sizing))
    _emit(detail, as_json, Group(*parts))


def _producer(client: ProdManagerClient, detail: Any, as_json: bool) -> tuple[Any, list[Any]] | None:
    """A chained request's producer and its runs (if a processing request), or None."""
    if detail.producer_id is None:
        return None
    producer = _run(as_json, lambda: client.get(detail.producer_id))
    runs = _run(as_json, lambda: client.runs(producer.id)) if producer.kind == "processing" else []
    return producer, runs


@main.command()
@click.argument("request_id", type=int)
@json_option
@click.pass_obj
def runs(obj: Context, request_id: int, as_json: bool) -> None:
    """The runs of a processing request: files by state, events, runs needing attention."""
    with obj.client() as client:
        items = _run(as_json, lambda: client.runs(request_id))
    _emit(items, as_json, render.run_table(items))


@main.command()
@click.argument("request_id", type=int)
@click.argument("run_number", type=int)
@click.argument("action", type=click.Choice(["accept", "drop", "reprocess"]))
@reason_option
@json_option
@click.pass_obj
def run(obj: Context, request_id: int, run_number: int, action: str, reason: str, as_json: bool) -> None:
    """Decide on a run that needs attention (operators): accept it as it is (merge what there
    is), drop it (never merged), or reprocess its failed files."""
    with obj.client() as client:
        info = _run(as_json, lambda: client.decide_run(request_id, run_number, action, reason))
    _emit(info, as_json, f"request {request_id} run {info.run}: {info.state}")


@main.command()
@click.argument("request_id", type=int)
@click.option("--state", default=None, help="Only allocations in this state.")
@json_option
@click.pass_obj
def allocations(obj: Context, request_id: int, state: str | None, as_json: bool) -> None:
    """List a request's allocations (event ranges or file groups) and who holds them."""
    with obj.client() as client:
        items = _run(as_json, lambda: client.allocations(request_id, state))
    _emit(items, as_json, render.allocation_table(items))


@main.command()
@click.argument("request_id", type=int)
@click.option("--interval", default=2.0, show_default=True, help="Seconds between polls.")
@click.option("--timeout", default=0.0, help="Give up after this many seconds (0: never).")
@json_option
@click.pass_obj
def watch(obj: Context, request_id: int, interval: float, timeout: float, as_json: bool) -> None:
    """Follow a request live until it is closed, aborted or failed (Ctrl-C to stop).

    With --json, print one JSON summary per poll."""
    deadline = time.monotonic() + timeout if timeout else None
    with obj.client() as client:
        if as_json:
            _watch_json(client, request_id, interval, deadline)
        else:
            _watch_live(client, request_id, interval, deadline)


def _finished(summary: Any) -> bool:
    c = summary.counters
    merged_all = summary.state == "completed" and c.events_merged >= c.events_produced > 0
    return summary.state in DONE_STATES or merged_all


def _watch_json(
    client: ProdManagerClient, request_id: int, interval: float, deadline: float | None
) -> None:
    while True:
        summary = _run(True, lambda: client.get(request_id))
        click.echo(summary.model_copy(update={"spec": {}, "history": []}).model_dump_json())
        if _finished(summary) or (deadline and time.monotonic() > deadline):
            return
        time.sleep(interval)


def _watch_live(
    client: ProdManagerClient, request_id: int, interval: float, deadline: float | None
) -> None:
    view = render.WatchView()
    try:
        with Live(view.renderable(), refresh_per_second=4) as live:
            while True:
                summary = _run(False, lambda: client.get(request_id))
                runs = _run(False, lambda: client.runs(request_id)) if summary.kind == "processing" else []
                producer = _producer(client, summary, False)
                view.update(summary, runs, producer[0] if producer else None)
                live.update(view.renderable())
                if _finished(summary) or (deadline and time.monotonic() > deadline):
                    return
                time.sleep(interval)
    except KeyboardInterrupt:
        pass


def _action(name: str, doc: str) -> None:
    @main.command(name=name, help=doc)
    @click.argument("request_id", type=int)
    @reason_option
    @json_option
    @click.pass_obj
    def command(obj: Context, request_id: int, reason: str, as_json: bool) -> None:
        with obj.client() as client:
            method = client.close_request if name == "close" else getattr(client, name)
            summary = _run(as_json, lambda: method(request_id, reason))
        _emit(summary, as_json, f"request {summary.id} {summary.name}: {summary.state}")


_action("abort", "Abort a request: its allocations are recalled and agents kill the jobs.")
_action("pause", "Pause a request: no new allocations go out; running jobs finish.")
_action("resume", "Resume a paused request.")
_action("close", "Close a completed or failed request.")


@main.command()
@click.argument("request_id", type=int)
@reason_option
@json_option
@click.pass_obj
def clone(obj: Context, request_id: int, reason: str, as_json: bool) -> None:
    """New request for only what the request did not produce (failed or never done)."""
    with obj.client() as client:
        result = _run(as_json, lambda: client.clone(request_id, reason))
    r = result.request
    _emit(
        result,
        as_json,
        f"cloned: request {r.id} {r.name} ({r.total_jobs} jobs, {r.total_events:,} events)",
    )
