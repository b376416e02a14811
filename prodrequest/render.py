"""Human output of the `prodrequest` CLI (rich tables, the request detail, watch bars).

Every stored string (names, owners, reasons, agents, states) goes into a `Text`, never into a
markup string: a reason such as `[/]` or `[bold` is shown as written, not interpreted by Rich.
"""

from __future__ import annotations

from datetime import UTC, datetime

from rich.console import Group
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn
from rich.table import Table
from rich.text import Text

from prodmanager.models import AgentSizing, AllocationInfo, RequestDetail, RequestSummary, RunInfo

STATE_STYLE = {
    "new": "cyan",
    "assigned": "blue",
    "running": "bold blue",
    "completed": "green",
    "closed": "dim green",
    "aborted": "red",
    "failed": "bold red",
    "paused": "yellow",
}


def when(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def state_text(state: str) -> Text:
    return Text(state, style=STATE_STYLE.get(state, ""))


def plain(value: object) -> Text:
    """Stored text for display: never parsed as Rich markup."""
    return Text("" if value is None else str(value))


def request_table(requests: list[RequestSummary]) -> Table:
    table = Table(title=f"{len(requests)} request(s)")
    for col in (
        "id",
        "name",
        "owner",
        "state",
        "prio",
        "requested",
        "produced",
        "merged",
        "created",
    ):
        table.add_column(col, justify="right" if col in ("id", "prio") else "left")
    for r in requests:
        c = r.counters
        table.add_row(
            str(r.id),
            plain(r.name),
            plain(r.owner),
            state_text(r.state),
            str(r.priority),
            f"{c.events_requested:,}",
            f"{c.events_produced:,}",
            f"{c.events_merged:,}",
            when(r.created_at),
        )
    return table


def request_detail(r: RequestDetail) -> Group:
    c = r.counters
    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold")
    head.add_column()
    output = r.spec.get("output") if isinstance(r.spec.get("output"), dict) else {}
    rows = [
        ("request", plain(f"{r.id}  {r.name}  ({r.kind})")),
        ("state", state_text(r.state)),
        ("owner", plain(r.owner)),
        ("priority", plain(r.priority)),
        ("run", plain(r.run_number)),
        ("output", plain(output.get("dataset", ""))),
        ("jobs", plain(f"{r.total_jobs}  " + _counts(c.allocations))),
        ("job states", plain(_counts(c.jobs) or "-")),
        ("events", plain(_events(r))),
        (
            "files",
            plain(f"{c.files_unmerged} unmerged, {c.files_merged} merged ({c.bytes_merged:,} B)"),
        ),
    ]
    if r.parent_id:
        rows.append(("clone of", plain(r.parent_id)))
    for name, counts in r.steps.items():  # a multi-step request: attempts of each step
        rows.append((f"step {name}", plain(_counts(counts) or "-")))
    for key, value in rows:
        head.add_row(key, value)
    history = Table(title="history")
    for col in ("when", "from", "to", "by", "why"):
        history.add_column(col)
    for h in r.history:
        history.add_row(
            when(h.at), plain(h.from_state), state_text(h.to_state), plain(h.actor), plain(h.reason)
        )
    return Group(head, history)


SIZING_SHOWN = frozenset({"events_per_job", "memory_mb", "time_s"})  # figures shown as the estimate


def sizing_detail(items: list[AgentSizing]) -> Table:
    """per_job auto: each agent's estimate, the figures it was computed from and the formula
    (one line per expression, as the agent sent it)."""
    table = Table(title="automatic job sizing (events.per_job: auto)", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    for s in items:
        table.add_row(plain(f"agent {s.agent}"), Text.assemble(
            state_text(s.state), f"  computed {when(s.computed_at)}, received {when(s.received_at)}"))
        if s.reason:
            table.add_row("paused because", plain(s.reason))
        table.add_row("events per job", plain(_or_dash(s.events_per_job)))
        table.add_row("memory", plain(_or_dash(s.memory_mb, " MB")))
        table.add_row("time", plain(_or_dash(s.time_s, " s")))
        measured = s.figures.get("jobs_measured")
        if measured is not None:
            scouts = s.figures.get("scouts_measured")
            table.add_row("based on", plain(f"{measured} job(s) measured" +
                                            (f" ({scouts} scout(s))" if scouts is not None else "")))
        for name, value in sorted(s.figures.items()):
            if name not in SIZING_SHOWN:
                table.add_row(plain(f"  {name}"), plain(value))
        for i, part in enumerate(p.strip() for p in s.formula.split(";") if p.strip()):
            table.add_row("formula" if i == 0 else "", plain(part))
        table.add_section()
    return table


def _or_dash(value: object, unit: str = "") -> str:
    return "-" if value is None else f"{value}{unit}"


def runs_line(items: list[RunInfo]) -> str:
    attention = sum(1 for r in items if r.state == "needs_attention")
    merged = sum(1 for r in items if r.state == "merged")
    return f"{len(items)} run(s): {merged} merged, {attention} needing attention"


def chain_table(tasks: list[tuple[str, RequestSummary, list[RunInfo]]]) -> Table:
    """A chained request and its producer side by side: (role, request, its runs) per task."""
    table = Table(title="chain (input request first)")
    for col in ("task", "request", "state", "jobs", "produced ev", "merged ev", "merged files", "runs"):
        table.add_column(col)
    for role, r, runs in tasks:
        c = r.counters
        table.add_row(role, plain(f"{r.id} {r.name}"), state_text(r.state), plain(_counts(c.allocations) or "-"),
                      f"{c.events_produced:,}", f"{c.events_merged:,}", str(c.files_merged),
                      plain(runs_line(runs) if runs else "-"))
    return table


def run_table(items: list[RunInfo]) -> Table:
    """Runs of a processing request: input files by state, events, and what needs attention."""
    table = Table(title=runs_line(items))
    for col in ("run", "state", "files", "input ev", "processed ev", "merged ev", "why"):
        table.add_column(col)
    for r in items:
        table.add_row(str(r.run), state_text(r.state), plain(_counts(r.files)), str(r.input_events),
                      str(r.processed_events), str(r.merged_events), plain(r.reason or r.decision or ""))
    return table


def allocation_table(items: list[AllocationInfo]) -> Table:
    table = Table(title=f"{len(items)} allocation(s)")
    for col in (
        "id",
        "job",
        "first",
        "events",
        "seed",
        "state",
        "agent",
        "epoch",
        "done",
        "job state",
    ):
        table.add_column(col)
    for a in items:
        state = "leased" if a.leased else a.state
        table.add_row(
            str(a.allocation_id),
            str(a.job_index),
            str(a.first_event),
            str(a.n_events),
            str(a.seed),
            plain(state),
            plain(a.agent),
            str(a.lease_epoch),
            str(a.events_done),
            plain(a.job_state),
        )
    return table


def _events(r: RequestSummary) -> str:
    c = r.counters
    return (
        f"requested {c.events_requested:,}, allocated {c.events_allocated:,}, "
        f"in progress {c.events_in_progress:,}, produced {c.events_produced:,}, "
        f"merged {c.events_merged:,}, failed {c.events_failed:,}"
    )


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items()) if v)


class WatchView:
    """Live bars for `watch`: events allocated, produced and merged out of those requested."""

    BARS = ("allocated", "produced", "merged")

    def __init__(self) -> None:
        self.progress = Progress(
            TextColumn("{task.description:>10}"),
            BarColumn(bar_width=40),
            TaskProgressColumn(),
            TextColumn("{task.completed:,.0f}/{task.total:,.0f} events"),
        )
        self.tasks = {name: self.progress.add_task(name, total=1) for name in self.BARS}
        self.status = Text()

    def update(self, r: RequestSummary, runs: list[RunInfo] | None = None,
               producer: RequestSummary | None = None) -> None:
        """`runs`: a processing request's runs; `producer`: a chained request's input request."""
        c = r.counters
        total = max(c.events_requested, 1)
        values = {
            "allocated": c.events_allocated,
            "produced": c.events_produced,
            "merged": c.events_merged,
        }
        for name, value in values.items():
            self.progress.update(self.tasks[name], completed=value, total=total)
        self.status = Text.assemble(
            f"request {r.id} {r.name}: ",
            state_text(r.state),
            f"   jobs: {_counts(c.allocations)}",
            f"   job states: {_counts(c.jobs) or '-'}",
        )
        if runs:
            self.status.append(f"\n{runs_line(runs)}")
        if producer is not None:
            p = producer.counters
            self.status.append(f"\ninput from request {producer.id} {producer.name}: ")
            self.status.append(state_text(producer.state))
            self.status.append(f"   produced {p.events_produced:,}, merged {p.events_merged:,} events "
                               f"in {p.files_merged} file(s)")

    def renderable(self) -> Group:
        return Group(self.status, self.progress)
