"""HTCondor plugin through the `htcondor2` bindings: one cluster per batch, ClassAd job ids.

Each batch is one `Schedd.submit` with per-job item data (`htcondor_submit`); every proc carries
the agent's job id in ProdAgentJobId and this agent's name in ProdAgentInstance, so queue and
history queries (and `find_submitted` after a crash) need no local bookkeeping. With
`status_source: event_log` the status comes from the job event log instead (`htcondor_status`).
The schedd is contacted on first use, so the plugin is built from configuration alone.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from prodagent.batch.base import (
    BatchJob,
    BatchPlugin,
    BatchState,
    BatchStatus,
    BatchUnavailable,
    PluginOptions,
    SiteSlots,
)
from prodagent.batch.htcondor_status import fold_events, status_from_ad
from prodagent.batch.htcondor_submit import INSTANCE_ATTR, JOB_ID_ATTR, description, item

PROJECTION = [
    "ClusterId",
    "ProcId",
    "JobStatus",
    "ExitCode",
    "ExitBySignal",
    "ExitSignal",
    "HoldReasonCode",
    "HoldReasonSubCode",
    "HoldReason",
    "RemoveReason",
    "RemoteWallClockTime",
    "RemoteUserCpu",
    "RemoteSysCpu",
    "ResidentSetSize",
    JOB_ID_ATTR,
]


class HTCondorOptions(PluginOptions):
    schedd_name: str | None = None  # located through the collector of `pool`
    pool: str | None = None  # collector host[:port]; default: the local configuration
    event_log: str | None = None  # default <workdir>/htcondor/jobs.log
    status_source: Literal["schedd", "event_log"] = "schedd"
    instance: str | None = None  # default: derived from the agent's work directory
    site: str = "htcondor"
    slots: int = Field(default=10_000, ge=1)  # reported by capacity()
    submit_extra: dict[str, str] = Field(default_factory=dict)  # added to every description


class HTCondorPlugin(BatchPlugin):
    name = "htcondor"
    Options = HTCondorOptions

    def __init__(self, options: PluginOptions, workdir: Path) -> None:
        super().__init__(options, workdir)
        self.opts: HTCondorOptions = options  # type: ignore[assignment]
        self.spool = workdir / "htcondor"
        self.spool.mkdir(parents=True, exist_ok=True)
        self.event_log = Path(self.opts.event_log or self.spool / "jobs.log")
        self.instance = self.opts.instance or (
            "pa-" + hashlib.sha256(str(workdir.resolve()).encode()).hexdigest()[:12]
        )
        self._schedd: Any = None

    # ---- schedd ----------------------------------------------------------------------------------
    def schedd(self) -> Any:
        if self._schedd is None:
            try:
                import htcondor2

                if self.opts.schedd_name or self.opts.pool:
                    collector = htcondor2.Collector(self.opts.pool)
                    ad = collector.locate(htcondor2.DaemonType.Schedd, self.opts.schedd_name)
                    self._schedd = htcondor2.Schedd(ad)
                else:
                    self._schedd = htcondor2.Schedd()
            except Exception as exc:  # noqa: BLE001 - any binding error means "unreachable"
                raise BatchUnavailable(f"HTCondor schedd not reachable: {exc}") from exc
        return self._schedd

    def _ours(self, job_ids: Sequence[str] | None = None) -> str:
        constraint = f"{INSTANCE_ATTR} == {json.dumps(self.instance)}"
        if job_ids is not None:
            constraint += (
                f" && member({JOB_ID_ATTR}, {{{', '.join(json.dumps(j) for j in job_ids)}}})"
            )
        return constraint

    # ---- BatchPlugin ----------------------------------------------------------------------------
    def submit(self, jobs: Sequence[BatchJob]) -> dict[str, str]:
        import htcondor2

        items, accepted_jobs = [], []
        for job in jobs:
            try:
                items.append(item(job))
            except ValueError:
                continue  # missing from the result: the caller records a submit failure
            job.workdir.mkdir(parents=True, exist_ok=True)
            accepted_jobs.append(job)
        if not items:
            return {}
        desc = htcondor2.Submit(
            description(str(self.event_log), self.instance, self.opts.submit_extra)
        )
        try:
            result = self.schedd().submit(desc, itemdata=iter(items))
        except BatchUnavailable:
            raise
        except Exception as exc:  # noqa: BLE001
            raise BatchUnavailable(f"HTCondor submit failed: {exc}") from exc
        cluster, first = result.cluster(), result.first_proc()
        return {job.job_id: f"{cluster}.{first + i}" for i, job in enumerate(accepted_jobs)}

    def query(self, job_ids: Iterable[str]) -> dict[str, BatchStatus]:
        ids = list(job_ids)
        found = (
            self._from_event_log(ids)
            if self.opts.status_source == "event_log"
            else (self._from_schedd(ids))
        )
        return {
            j: found.get(j) or BatchStatus(j, BatchState.LOST, reason="unknown to HTCondor")
            for j in ids
        }

    def _from_schedd(self, ids: list[str]) -> dict[str, BatchStatus]:
        wanted = set(ids)
        try:
            queue = self.schedd().query(self._ours(), PROJECTION)
            missing = wanted - {str(ad.get(JOB_ID_ATTR)) for ad in queue}
            history = (
                self.schedd().history(self._ours(sorted(missing)), PROJECTION) if missing else []
            )
        except BatchUnavailable:
            raise
        except Exception as exc:  # noqa: BLE001
            raise BatchUnavailable(f"HTCondor query failed: {exc}") from exc
        newest: dict[str, Any] = {}
        for ad in [*history, *queue]:  # the queue wins over history, newer procs over older
            job_id = str(ad.get(JOB_ID_ATTR))
            key = (int(ad.get("ClusterId", 0)), int(ad.get("ProcId", 0)))
            if job_id in wanted and key >= newest.get(job_id, ((-1, -1), None))[0]:
                newest[job_id] = (key, ad)
        return {j: status_from_ad(j, ad) for j, (_, ad) in newest.items()}

    def _from_event_log(self, ids: list[str]) -> dict[str, BatchStatus]:
        if not self.event_log.exists():
            return {}
        import htcondor2

        statuses = fold_events(htcondor2.JobEventLog(str(self.event_log)).events(stop_after=0))
        return {j: statuses[j] for j in ids if j in statuses}

    def kill(self, job_ids: Iterable[str]) -> None:
        import htcondor2

        ids = list(job_ids)
        if not ids:
            return
        try:
            self.schedd().act(htcondor2.JobAction.Remove, self._ours(ids), "killed by prodagent")
        except BatchUnavailable:
            raise
        except Exception as exc:  # noqa: BLE001
            raise BatchUnavailable(f"HTCondor remove failed: {exc}") from exc

    def find_submitted(self, job_ids: Iterable[str]) -> dict[str, str]:
        return {
            j: s.batch_id
            for j, s in self.query(job_ids).items()
            if s.state is not BatchState.LOST and s.batch_id
        }

    def capacity(self) -> list[SiteSlots]:
        try:
            queue = self.schedd().query(self._ours(), ["JobStatus"])
        except BatchUnavailable:
            raise
        except Exception as exc:  # noqa: BLE001
            raise BatchUnavailable(f"HTCondor query failed: {exc}") from exc
        running = sum(1 for ad in queue if ad.get("JobStatus") == 2)
        queued = sum(1 for ad in queue if ad.get("JobStatus") == 1)
        return [SiteSlots(self.opts.site, self.opts.slots, running, queued)]
