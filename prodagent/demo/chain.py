"""The chained demo (`python -m prodagent.demo --chain`): generate -> reconstruct -> merge per run.

Task A generates minimum-bias events with Pythia (failures injected); task B, a processing
request reading A's dataset, reconstructs each merged GEN file as A hands it on (failures
injected too) and merges its mDSTs per run once A has ended. The summary reads the merged files
back: every generated (run, event) must be in exactly one merged mDST, and the merged
histograms must be the sum of the unmerged ones.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.live import Live
from rich.table import Table

from prodagent.demo.stack import AgentProcesses, Manager
from prodagent.payload import rootio

GEN_FAIL_PLAN = "2:exit,5:memory"
RECO_FAIL_PLAN = "1:exit,2:nooutput"


def workflows(stamp: str, gen_fail: str, reco_fail: str) -> tuple[dict[str, Any], dict[str, Any]]:
    gen_ds = f"/MinBias_13TeV/chain-{stamp}/GEN"
    common = {"retry": {"max_retries": 3, "cooloff": "linear", "base_s": 2},
              "resources": {"memory_mb": 800, "time_s": 300}}
    gen = {
        "kind": "montecarlo", "name": f"chain_gen_{stamp}", "run_number": 4242,
        "payload": {"transformation": "pythia", "version": "8.317",
                    "parameters": {"process": "minbias", "fail_plan": gen_fail}},
        "events": {"total": 1600, "per_job": 200},
        "output": {"dataset": gen_ds, "tier": "GEN"},
        "merge": {"min_size_bytes": 1, "max_size_bytes": 1 << 30, "max_events": 400, "max_wait_s": 5},
        **common,
    }
    reco = {
        "kind": "processing", "name": f"chain_reco_{stamp}",
        "payload": {"transformation": "reconstruct", "version": "1", "parameters": {"fail_plan": reco_fail}},
        "input": {"dataset": gen_ds},
        "output": {"dataset": f"/MinBias_13TeV/chain-{stamp}-reco/MDST", "tier": "MDST"},
        "merge": {"per_run": True, "min_size_bytes": 1, "max_size_bytes": 1 << 30, "max_wait_s": 5},
        **common,
    }
    return gen, reco


def produce(manager: Manager, agent: AgentProcesses, console: Console, timeout: float,
            gen_fail: str = GEN_FAIL_PLAN, reco_fail: str = RECO_FAIL_PLAN) -> bool:
    client = manager.client("requester", "physicist")
    gen_doc, reco_doc = workflows(time.strftime("%Y%m%d%H%M%S"), gen_fail, reco_fail)
    gen = client.submit(gen_doc).request
    reco = client.submit(reco_doc).request
    console.print(f"submitted task A (generate) request {gen.id}: {gen.total_events} events in {gen.total_jobs} "
                  f"jobs, failures {gen_fail or 'none'}; task B (reconstruct {gen_doc['output']['dataset']}) "
                  f"request {reco.id}, failures {reco_fail or 'none'}, merged per run")
    start = time.monotonic()
    with Live(console=console, refresh_per_second=2) as live:
        while time.monotonic() - start < timeout:
            a, b, runs = client.get(gen.id), client.get(reco.id), client.runs(reco.id)
            live.update(progress(a, b, runs, time.monotonic() - start))
            if b.state in ("closed", "aborted"):
                break
            time.sleep(1.0)
    return summary(client.get(gen.id), client.get(reco.id), client.runs(reco.id),
                   agent.config.workdir / "data", gen_doc, reco_doc, console)


def progress(a: Any, b: Any, runs: list[Any], elapsed: float) -> Table:
    table = Table(title=f"chained production after {elapsed:.0f} s", show_header=True)
    for col in ("task", "state", "jobs", "events produced", "events merged"):
        table.add_column(col)
    for task, r in (("A generate", a), ("B reconstruct", b)):
        c = r.counters
        jobs = "  ".join(f"{k} {v}" for k, v in sorted(c.allocations.items()))
        table.add_row(task, r.state, f"{r.total_jobs}: {jobs}", str(c.events_produced), str(c.events_merged))
    for run in runs:
        files = "  ".join(f"{k} {v}" for k, v in run.files.items() if v)
        table.add_row(f"  run {run.run}", run.state, files, str(run.processed_events), str(run.merged_events))
    return table


def run_events(paths: list[Path]) -> list[tuple[int, int]]:
    """(run, event) of every entry of these ROOT files, duplicates kept."""
    out: list[tuple[int, int]] = []
    for path in paths:
        cols = rootio.open_tree(path).arrays(["run", "event"], library="np")
        out += zip(cols["run"].tolist(), cols["event"].tolist(), strict=True)
    return out


def hist_sums(paths: list[Path]) -> dict[str, Any]:
    """Bin contents (flow bins included) of each histogram name, summed over these files."""
    import uproot

    total: dict[str, Any] = {}
    for path in paths:
        with uproot.open(path) as f:
            for name in f.keys(cycle=False):
                total[name] = total.get(name, 0) + f[name].values(flow=True)
    return total


def summary(a: Any, b: Any, runs: list[Any], data: Path, gen_doc: dict[str, Any], reco_doc: dict[str, Any],
            console: Console) -> bool:
    def area(kind: str, doc: dict[str, Any]) -> Path:
        return data / kind / doc["output"]["dataset"].strip("/")

    gen_files = sorted(area("merged", gen_doc).rglob("*.root"))
    mdsts = sorted(p for p in area("merged", reco_doc).rglob("*.root") if not p.name.endswith(".hist.root"))
    generated, reconstructed = run_events(gen_files), run_events(mdsts)
    want = hist_sums(list(area("unmerged", reco_doc).rglob("*.hist.root")))
    got = hist_sums(list(area("merged", reco_doc).rglob("*.hist.root")))
    hists_ok = bool(want) and set(want) == set(got) and all(np.array_equal(want[k], got[k]) for k in want)
    exact = sorted(generated) == sorted(reconstructed) and len(set(generated)) == len(generated)
    table = Table(title="chained production summary")
    table.add_column("item")
    table.add_column("value")
    table.add_row("task A (generate)", f"request {a.id}: {a.state}, {a.counters.events_merged} events merged "
                                       f"in {len(gen_files)} GEN files")
    table.add_row("task B (reconstruct)", f"request {b.id}: {b.state}, {b.counters.events_merged} events merged "
                                          f"in {len(mdsts)} mDST files ({', '.join(p.name for p in mdsts)})")
    for run in runs:
        table.add_row(f"run {run.run}", f"{run.state}: {run.processed_events} processed, {run.merged_events} merged")
    table.add_row("(run, event) in merged mDSTs", f"{len(reconstructed)}; each generated event exactly once: {exact}")
    table.add_row("merged histograms == sum of unmerged", str(hists_ok))
    console.print(table)
    ok = exact and hists_ok and b.state == "closed" and len(generated) == gen_doc["events"]["total"]
    console.print("[bold green]chained production complete: every generated event reconstructed and merged once[/]"
                  if ok else "[bold red]chained production incomplete[/]")
    return ok
