"""Slurm plugin: job arrays through sbatch, one squeue per query, scancel.

Jobs with the same partition, memory and time limit go into one job array (up to
`max_array_size` tasks): one sbatch call for many jobs. Each job gets a script `batch.sh` in its
work directory (environment, then `prodagent.batch.runner` around the command, so exit code and
resource use are known without slurmdbd); the array's script runs line N of a list of them.

Crash recovery: before calling sbatch the plugin writes a manifest
`<workdir>/slurm/batches/<tag>.json` with the agent job ids in task order; the array is named
`<prefix>-<tag>` and its --comment names the manifest. So an agent that died between sbatch and
recording the result finds the array in squeue by name and maps its tasks back to job ids.
"""

from __future__ import annotations

import math
import os
import shlex
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

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
from prodagent.batch.files import read_json, write_json_atomic
from prodagent.batch.slurm_states import (
    SQUEUE_FORMAT,
    SlurmRow,
    parse_squeue,
    status_from_row,
)

RESULT_FILE = "batch-result.json"


class SlurmOptions(PluginOptions):
    partition: str | None = None  # default partition; a job's `site` overrides it
    account: str | None = None
    extra_args: list[str] = Field(default_factory=list)  # appended to every sbatch call
    name_prefix: str = "prodagent"
    max_array_size: int = Field(default=1000, ge=1)
    python: str = Field(default_factory=lambda: sys.executable)  # runs the runner on the node
    slurm_conf: str | None = None  # exported as SLURM_CONF to every Slurm command
    command_timeout_s: float = Field(default=120.0, gt=0)


class SlurmPlugin(BatchPlugin):
    name = "slurm"
    Options = SlurmOptions

    def __init__(self, options: PluginOptions, workdir: Path) -> None:
        super().__init__(options, workdir)
        self.opts: SlurmOptions = options  # type: ignore[assignment]
        self.spool = workdir / "slurm"
        self.batches = self.spool / "batches"
        self.logs = self.spool / "logs"
        self.batches.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(parents=True, exist_ok=True)
        # job id -> (tag, task index); manifests never change once written
        self._index: dict[str, tuple[str, int]] = {}
        self._manifests: dict[str, dict[str, Any]] = {}

    # ---- Slurm commands --------------------------------------------------------------------------
    def _run(self, argv: list[str], stdin: str | None = None, check: bool = True) -> str:
        env = dict(os.environ)
        if self.opts.slurm_conf:
            env["SLURM_CONF"] = self.opts.slurm_conf
        try:
            proc = subprocess.run(
                argv,
                input=stdin,
                capture_output=True,
                text=True,
                env=env,
                timeout=self.opts.command_timeout_s,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise BatchUnavailable(f"{argv[0]}: {exc}") from exc
        if check and proc.returncode != 0:
            raise BatchUnavailable(
                f"{shlex.join(argv[:3])}...: rc={proc.returncode}: {proc.stderr.strip()[:500]}"
            )
        return proc.stdout

    def _squeue(self, names: Iterable[str]) -> list[SlurmRow]:
        names = sorted(set(names))
        if not names:
            return []
        out = self._run(
            ["squeue", "-h", "-r", "-t", "all", "--name", ",".join(names), "-O", SQUEUE_FORMAT]
        )
        return parse_squeue(out)

    # ---- manifests -------------------------------------------------------------------------------
    def _array_name(self, tag: str) -> str:
        return f"{self.opts.name_prefix}-{tag}"

    def _refresh_index(self) -> None:
        for entry in sorted(os.listdir(self.batches)):
            if not entry.endswith(".json") or entry[:-5] in self._manifests:
                continue
            manifest = read_json(self.batches / entry)
            if manifest is None:
                continue
            tag = entry[:-5]
            self._manifests[tag] = manifest
            # tags sort by submission time, so a resubmitted job maps to its newest array
            for index, job_id in enumerate(manifest["job_ids"]):
                self._index[job_id] = (tag, index)

    def _array_id(self, tag: str) -> str | None:
        path = self.batches / f"{tag}.id"
        try:
            return path.read_text().strip() or None
        except FileNotFoundError:
            return None

    # ---- submit ----------------------------------------------------------------------------------
    def _job_script(self, job: BatchJob) -> Path:
        job.workdir.mkdir(parents=True, exist_ok=True)
        lines = [
            "#!/bin/sh",
            f"cd {shlex.quote(str(job.workdir))} || exit 97",
            "exec >batch.out 2>batch.err",
            *(f"export {k}={shlex.quote(v)}" for k, v in job.env.items()),
            f"exec {shlex.quote(self.opts.python)} -m prodagent.batch.runner {RESULT_FILE} -- "
            + shlex.join(job.command),
        ]
        script = job.workdir / "batch.sh"
        script.write_text("\n".join(lines) + "\n")
        (job.workdir / RESULT_FILE).unlink(missing_ok=True)
        return script

    def _sbatch_args(
        self, tag: str, count: int, partition: str | None, memory_mb: int, time_s: int,
        exclude: tuple[str, ...] = (),
    ) -> list[str]:
        args = [
            "sbatch",
            "--parsable",
            f"--array=0-{count - 1}",
            f"--job-name={self._array_name(tag)}",
            f"--comment=prodagent manifest {self.batches / (tag + '.json')}",
            f"--mem={memory_mb}M",
            f"--time={max(1, math.ceil(time_s / 60))}",
            f"--output={self.logs / tag}_%a.out",
            "--open-mode=append",
        ]
        if partition:
            args.append(f"--partition={partition}")
        if self.opts.account:
            args.append(f"--account={self.opts.account}")
        if exclude:
            args.append(f"--exclude={','.join(exclude)}")  # black-hole nodes
        return args + list(self.opts.extra_args)

    def submit(self, jobs: Sequence[BatchJob]) -> dict[str, str]:
        groups: dict[tuple[str | None, int, int, tuple[str, ...]], list[BatchJob]] = defaultdict(list)
        for job in jobs:
            key = (job.site or self.opts.partition, job.memory_mb, job.time_s, tuple(sorted(job.exclude_nodes)))
            groups[key].append(job)
        accepted: dict[str, str] = {}
        for (partition, memory_mb, time_s, exclude), group in groups.items():
            for start in range(0, len(group), self.opts.max_array_size):
                chunk = group[start : start + self.opts.max_array_size]
                accepted.update(self._submit_array(chunk, partition, memory_mb, time_s, exclude))
        return accepted

    def _submit_array(
        self, jobs: list[BatchJob], partition: str | None, memory_mb: int, time_s: int,
        exclude: tuple[str, ...] = (),
    ) -> dict[str, str]:
        tag = f"{time.time_ns():x}-{uuid.uuid4().hex[:6]}"
        scripts = [self._job_script(job) for job in jobs]
        list_file = self.batches / f"{tag}.scripts"
        list_file.write_text("".join(f"{s}\n" for s in scripts))
        write_json_atomic(
            self.batches / f"{tag}.json",
            {"job_ids": [j.job_id for j in jobs], "submitted": time.time()},
        )
        array_script = (
            "#!/bin/sh\n"
            f'exec /bin/sh "$(sed -n "$((SLURM_ARRAY_TASK_ID + 1))p" {shlex.quote(str(list_file))})"\n'
        )
        args = self._sbatch_args(tag, len(jobs), partition, memory_mb, time_s, exclude)
        try:
            out = self._run(args, stdin=array_script)
        except BatchUnavailable:
            # Refused (or unsure): if Slurm has it after all, find_submitted still sees the name.
            if not self._squeue([self._array_name(tag)]):
                (self.batches / f"{tag}.json").unlink(missing_ok=True)
            return {}
        array_id = out.strip().split(";")[0]
        (self.batches / f"{tag}.id").write_text(array_id)
        return {job.job_id: f"{array_id}_{i}" for i, job in enumerate(jobs)}

    # ---- query -----------------------------------------------------------------------------------
    def query(self, job_ids: Iterable[str]) -> dict[str, BatchStatus]:
        ids = list(job_ids)
        self._refresh_index()
        located = {j: self._index[j] for j in ids if j in self._index}
        tags = {tag for tag, _ in located.values()}
        rows = {(r.name, r.task_id): r for r in self._squeue(self._array_name(t) for t in tags)}
        result = {}
        for job_id in ids:
            if job_id not in located:
                result[job_id] = BatchStatus(job_id, BatchState.LOST, reason="never submitted")
                continue
            tag, index = located[job_id]
            row = rows.get((self._array_name(tag), index))
            result[job_id] = self._status(job_id, tag, index, row)
        return result

    def _status(self, job_id: str, tag: str, index: int, row: SlurmRow | None) -> BatchStatus:
        runner = self._runner_result(tag, index)
        if row is None:
            array_id = self._array_id(tag)
            batch_id = f"{array_id}_{index}" if array_id else None
            if runner is not None:  # Slurm forgot the job, but it ran to the end
                return BatchStatus(
                    job_id,
                    BatchState.DONE,
                    batch_id,
                    runner.get("exit_code"),
                    wall_s=runner.get("wall_s"),
                    cpu_s=runner.get("cpu_s"),
                    max_rss_mb=runner.get("max_rss_mb"),
                )
            return BatchStatus(job_id, BatchState.LOST, batch_id, reason="unknown to Slurm")
        output = ""
        if row.state == "FAILED" and row.reason != "NonZeroExitCode":
            output = _read_tail(self.logs / f"{tag}_{index}.out")
        return status_from_row(job_id, row, output, runner)

    def _runner_result(self, tag: str, index: int) -> dict[str, Any] | None:
        try:
            script = Path(self._script_lines(tag)[index])
        except IndexError:
            return None
        return read_json(script.parent / RESULT_FILE)

    def _script_lines(self, tag: str) -> list[str]:
        manifest = self._manifests.get(tag, {})
        if "scripts" not in manifest:
            try:
                manifest["scripts"] = (self.batches / f"{tag}.scripts").read_text().splitlines()
            except FileNotFoundError:
                manifest["scripts"] = []
        return manifest["scripts"]

    # ---- kill, find, capacity ----------------------------------------------------------------
    def kill(self, job_ids: Iterable[str]) -> None:
        self._refresh_index()
        targets = []
        for job_id in job_ids:
            if job_id in self._index:
                tag, index = self._index[job_id]
                array_id = self._array_id(tag)
                if array_id:
                    targets.append(f"{array_id}_{index}")
        for start in range(0, len(targets), 500):
            # scancel complains about jobs that already ended; that is not an error here.
            self._run(["scancel", *targets[start : start + 500]], check=False)

    def find_submitted(self, job_ids: Iterable[str]) -> dict[str, str]:
        ids = list(job_ids)
        self._refresh_index()
        located = {j: self._index[j] for j in ids if j in self._index}
        missing_tags = {t for t, _ in located.values() if self._array_id(t) is None}
        # Arrays submitted just before a crash: sbatch succeeded but the id was not recorded.
        for row in self._squeue(self._array_name(t) for t in missing_tags):
            tag = row.name.removeprefix(f"{self.opts.name_prefix}-")
            if tag in missing_tags and self._array_id(tag) is None:
                (self.batches / f"{tag}.id").write_text(row.array_job_id)
        found = {}
        for job_id, (tag, index) in located.items():
            array_id = self._array_id(tag)
            if array_id:
                found[job_id] = f"{array_id}_{index}"
        return found

    def capacity(self) -> list[SiteSlots]:
        cpus = self._run(["sinfo", "-h", "-o", "%R|%C"])
        load: dict[str, dict[str, int]] = defaultdict(lambda: {"RUNNING": 0, "PENDING": 0})
        for line in self._run(
            ["squeue", "-h", "-r", "-t", "PENDING,RUNNING", "-o", "%P|%T"]
        ).splitlines():
            partition, _, state = line.partition("|")
            if state in ("RUNNING", "PENDING"):
                load[partition][state] += 1
        slots = []
        for line in cpus.splitlines():
            partition, _, counts = line.partition("|")
            total = int(counts.split("/")[-1]) if counts.count("/") == 3 else 0
            if self.opts.partition and partition.rstrip("*") != self.opts.partition:
                continue
            name = partition.rstrip("*")
            slots.append(SiteSlots(name, total, load[name]["RUNNING"], load[name]["PENDING"]))
        return slots


def _read_tail(path: Path, size: int = 8192) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(max(0, path.stat().st_size - size))
            return fh.read().decode(errors="replace")
    except FileNotFoundError:
        return ""
