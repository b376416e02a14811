"""The main job: a complete Monte Carlo production on the embedded defaults.

    python -m prodagent.demo [--workdir DIR] [--workflow FILE] [--slots N] [--keep] [--chain] [--serve]

Starts a ProdManager (SQLite) and an agent (SQLite, local executor), submits a request of real
Pythia events split into many jobs with injected failures of several classes, shows progress
while it runs, acts as the operator for a job paused on a fatal error, and ends with a summary:
events requested, produced and merged (read back from the merged ROOT files), jobs by final
state, error-handler decisions by class, files and sizes. Everything it started is stopped.
While it runs, ProdManager's web monitor is at the printed address (an operator token to sign in
with is printed too); with `--serve` the agent stops at the end but the monitor stays up until
Ctrl-C, for a person to look at.

With --chain it runs a chained production instead: generate -> reconstruct -> merge per run,
with failures injected in both tasks (`prodagent.demo.chain`).

Ctrl-C (SIGINT), SIGTERM and SIGHUP (its terminal closed) stop the production: ProdManager, the
agent's supervisor and components, and every payload still running are stopped, what was stopped
is listed, and it exits 128 + the signal number (130, 143, 129).
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.live import Live
from rich.table import Table

from prodagent.demo.stack import AgentProcesses, Manager, stop_leftovers, write_agent_config
from prodagent.jobs import summary

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_WORKFLOW = ROOT / "etc" / "workflows" / "minbias_demo.yaml"
# job index -> failure mode on the first attempt: one of each class the error handler knows.
FAIL_PLAN = "2:exit,5:memory,8:nooutput,11:empty,14:noendofjob,17:fatal"
console = Console()
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Interrupted(Exception):
    """A stop signal arrived: unwind to the cleanup."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class StopSignals:
    """Turns SIGINT, SIGTERM and SIGHUP into `Interrupted`, except inside `shielded()` blocks
    (starting a process must not be cut between its launch and its being recorded), where the
    signal is held until the block ends. Once one has arrived, later ones are ignored: the
    cleanup must run to its end."""

    def __init__(self) -> None:
        self.received: int | None = None
        self._shield = 0
        for sig in STOP_SIGNALS:
            signal.signal(sig, self._on_signal)

    def _on_signal(self, signum: int, _frame: object) -> None:
        if self.received is not None:
            return
        self.received = signum
        for sig in STOP_SIGNALS:
            signal.signal(sig, signal.SIG_IGN)
        if not self._shield:
            raise Interrupted(signum)

    def hold(self) -> None:
        """From now on a stop signal is only recorded (the cleanup has begun)."""
        self._shield += 1

    @contextlib.contextmanager
    def shielded(self) -> Iterator[None]:
        self._shield += 1
        try:
            yield
        finally:
            self._shield -= 1
        if self.received is not None and not self._shield:
            raise Interrupted(self.received)


def say(text: str) -> None:
    """Print, even when the terminal is gone (SIGHUP): the cleanup must not die of it."""
    with contextlib.suppress(OSError, ValueError):
        console.print(text, highlight=False)


def load_workflow(path: Path, fail_plan: str | None) -> dict[str, Any]:
    workflow = yaml.safe_load(path.read_text())
    workflow["name"] = f"{workflow['name']}_{time.strftime('%Y%m%d_%H%M%S')}"
    if fail_plan:
        workflow["payload"].setdefault("parameters", {})["fail_plan"] = fail_plan
    return workflow


def progress_table(request: Any, agent_view: dict[str, Any], elapsed: float) -> Table:
    c = request.counters
    table = Table(title=f"request {request.id}: {request.state} after {elapsed:.0f} s", show_header=False)
    table.add_column("item", style="bold")
    table.add_column("value")
    fmt = lambda d: "  ".join(f"{k} {v}" for k, v in sorted(d.items())) or "-"  # noqa: E731
    table.add_row("events", f"requested {c.events_requested}  allocated {c.events_allocated}  "
                            f"produced {c.events_produced}  merged {c.events_merged}")
    table.add_row("production jobs", fmt(agent_view["jobs"].get("production", {})))
    table.add_row("merge jobs", fmt(agent_view["jobs"].get("merge", {})))
    table.add_row("error classes", fmt({k: sum(v.values()) for k, v in agent_view["decisions"].items()}))
    return table


def agent_view(agent: AgentProcesses) -> dict[str, Any]:
    from prodagent.runtime.runner import open_service

    service = open_service(agent.config, pool_size=1)
    try:
        return service.tx.run(lambda conn: {
            "jobs": summary.jobs_by_state(conn, service.agent),
            "decisions": summary.decisions_by_class(conn, service.agent),
            "datasets": summary.datasets(conn, service.agent),
        })
    finally:
        service.engine.dispose()


def finished(request: Any, view: dict[str, Any]) -> bool:
    live = {"created", "submitted", "running", "submitfailed", "jobfailed", "lost", "cooloff", "paused", "success"}
    busy = any(state in live for states_ in view["jobs"].values() for state in states_)
    return request.counters.events_merged >= request.total_events and not busy


def read_back_events(workdir: Path) -> tuple[int, int, int]:
    """Events, files and bytes in the merged area, counted from the ROOT files themselves."""
    import uproot

    events = files = size = 0
    for path in sorted((workdir / "data" / "merged").rglob("*.root")):
        with uproot.open(path) as f:
            events += f["events"].num_entries
        files += 1
        size += path.stat().st_size
    return events, files, size


def print_summary(request: Any, view: dict[str, Any], workdir: Path, elapsed: float) -> bool:
    merged_events, merged_files, merged_bytes = read_back_events(workdir)
    leftovers = [p for p in (workdir / "data" / "unmerged").rglob("*") if p.is_file()]
    table = Table(title="production summary")
    table.add_column("item")
    table.add_column("value")
    c = request.counters
    table.add_row("request", f"{request.id} {request.name} ({request.state})")
    table.add_row("events requested", str(request.total_events))
    table.add_row("events produced", str(c.events_produced))
    table.add_row("events merged (ProdManager)", str(c.events_merged))
    table.add_row("events in merged ROOT files", str(merged_events))
    table.add_row("merged files / bytes", f"{merged_files} / {merged_bytes:,}")
    table.add_row("files left in the unmerged area", str(len(leftovers)))
    for job_type, by_state in view["jobs"].items():
        table.add_row(f"{job_type} jobs by final state", ", ".join(f"{k}: {v}" for k, v in sorted(by_state.items())))
    for error_class, decided in sorted(view["decisions"].items()):
        table.add_row(f"error class {error_class}", ", ".join(f"{k}: {v}" for k, v in sorted(decided.items())))
    table.add_row("wall time", f"{elapsed:.0f} s")
    console.print(table)
    ok = merged_events == request.total_events and not leftovers
    console.print("[bold green]production complete: every requested event is merged[/]" if ok
                  else "[bold red]production incomplete[/]")
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=ROOT / "work" / "demo")
    parser.add_argument("--workflow", type=Path, default=DEFAULT_WORKFLOW)
    parser.add_argument("--slots", type=int, default=2)
    parser.add_argument("--fail-plan", default=FAIL_PLAN, help="'' for a run without injected failures")
    parser.add_argument("--timeout", type=float, default=280.0)
    parser.add_argument("--keep", action="store_true", help="keep the work directory of an earlier run")
    parser.add_argument("--serve", action="store_true",
                        help="leave the web monitor up at the end (until Ctrl-C)")
    parser.add_argument("--chain", action="store_true", help="generate -> reconstruct -> merge per run")
    args = parser.parse_args(argv)
    workdir: Path = args.workdir.resolve()
    if workdir.exists() and not args.keep:
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    signals = StopSignals()
    manager = Manager(workdir / "prodmanager", f"sqlite:///{workdir / 'prodmanager' / 'prodmanager.db'}")
    exit_code = 1
    agent: AgentProcesses | None = None
    try:
        console.print(f"[bold]starting ProdManager[/] on {manager.url} and agent [bold]agent1[/] in {workdir}")
        with signals.shielded():
            manager.start()
        console.print(f"[bold]web monitor[/]: {manager.url}/", highlight=False, soft_wrap=True)
        console.print(f"  sign in with the operator token {manager.token('operator', 'demo-ops')}",
                      highlight=False, soft_wrap=True)
        agent = AgentProcesses(write_agent_config(workdir / "agent.yaml", workdir / "agent", manager, slots=args.slots))
        with signals.shielded():
            agent.start()
        console.print(agent.ctl("status", check=False).stdout)
        if args.chain:
            from prodagent.demo import chain

            exit_code = 0 if chain.produce(manager, agent, console, args.timeout) else 1
        else:
            exit_code = 0 if produce(args, manager, agent, start, workdir) else 1
        if args.serve:
            agent.stop()
            agent = None
            serve_until_stopped(manager, signals)
    except Exception as exc:
        if signals.received is None:
            raise
        # The signal may surface as Interrupted, or as the failure of a child it also reached.
        name = signal.Signals(signals.received).name
        say(f"[bold red]interrupted by {name}[/]: stopping everything this run started"
            + ("" if isinstance(exc, Interrupted) else f" ({exc.__class__.__name__} on the way)"))
    finally:
        signals.hold()
        stopped = []
        if agent is not None:
            report = agent.stop()
            stopped += [line.strip() for line in report.splitlines() if line.strip()]
        pm = manager.stop()
        if pm:
            stopped.append(f"{pm} stopped")
        stopped += [f"{line} stopped" for line in stop_leftovers(workdir)]
        if signals.received is not None:
            say("stopped:\n  " + "\n  ".join(stopped or ["nothing was running"]))
        else:
            say("stopped the agent and ProdManager")
    return 128 + signals.received if signals.received is not None else exit_code

def serve_until_stopped(manager: Manager, signals: StopSignals) -> None:
    """Keep ProdManager (and its web monitor) up until a stop signal, which here is the normal
    end and not an interruption."""
    say(f"production over; the web monitor stays up at {manager.url}/ (Ctrl-C to stop it)")
    try:
        while True:
            time.sleep(1.0)
    except Interrupted:
        signals.received = None


def produce(args: argparse.Namespace, manager: Manager, agent: AgentProcesses, start: float, workdir: Path) -> bool:
    """Submit the request, follow it to its end (acting as the operator), print the summary."""
    import json

    client = manager.client("requester", "physicist")
    workflow = load_workflow(args.workflow, args.fail_plan)
    request = client.submit(workflow).request
    console.print(f"submitted request {request.id}: {request.total_events} events in {request.total_jobs} jobs; "
                  f"injected failures: {args.fail_plan or 'none'}")
    operator_done: set[int] = set()
    with Live(console=console, refresh_per_second=2) as live:
        while time.monotonic() - start < args.timeout:
            request = client.get(request.id)
            view = agent_view(agent)
            live.update(progress_table(request, view, time.monotonic() - start))
            if finished(request, view):
                break
            if view["jobs"].get("production", {}).get("paused"):
                paused = agent.cli("jobs", "list", "--state", "paused", "--json")
                ids = [j["id"] for j in json.loads(paused.stdout) if j["id"] not in operator_done]
                if ids:
                    live.console.print(f"operator: job(s) {ids} paused on a fatal error; inspected and resubmitted")
                    agent.cli("jobs", "resubmit", *map(str, ids))
                    operator_done.update(ids)
            time.sleep(1.0)
    time.sleep(2.5)  # let Cleanup finish the last merge
    return print_summary(client.get(request.id), agent_view(agent), workdir / "agent", time.monotonic() - start)

if __name__ == "__main__":
    sys.exit(main())
