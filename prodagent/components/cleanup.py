"""Cleanup: after an accepted merge, frees the disk its inputs and jobs used, keeping the logs.

On `MergeAccepted`, for the merge's inputs: the unmerged files are deleted (merged -> cleaned);
each production job whose files are all merged has its work area (every attempt: job.json,
job.log, report.json, batch.out/err) archived to `logs/archive/<request>/<job>.tar.gz`, then
removed, and goes success -> cleaned. The merge job's own work area is archived and removed the
same way. What was freed is logged.

Crash-safe and idempotent: the inputs' rows are locked first; disk work comes next and tolerates
what an earlier, interrupted delivery already did (a file already gone, an archive already
written is kept as it is: it was written whole, by rename); the database follows in the same
transaction. A delivery that finds nothing left to do changes nothing.

Storage elements: an unmerged file with a replica on an element is not cleaned by the handler.
The tick (`storage.custody`, no transaction open) copies merged files to the archive element when
one is configured, deletes the unmerged replicas once the merged file (and its archive copy) is
verified, and then cleans those merges here; nothing is deleted before its successor is verified.

Reconciliation: every `reconcile_s` the merges whose inputs are still `merged` (accepted, not
cleaned) at two passes in a row, with no `MergeAccepted` of theirs still queued (it was lost, not
merely late behind a long queue), are cleaned
the same way by the next tick, each in a transaction of its own. The same pass voids the
outputs of lost work: unmerged files still `new` whose allocation ended without a completion
(lost, recalled, failed, released) and whose job is no longer live become `void` (never merged),
are deleted from disk (`cleaned`), and their jobs' work areas are archived and removed the same
way (success -> cleaned). No message announces such files: reconciliation is their only path.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tarfile
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from prodagent.jobs import file_states, states, store
from prodagent.jobs.layout import Layout
from prodagent.runtime.component import Component, Context, handles
from prodagent.storage import catalog, replica_states
from prodagent.storage.custody import Custody
from prodagent.storage.elements import Elements

T = TypeVar("T")
DATA_SUFFIXES = (".root", ".part")  # outputs never live in a work area; if one does, it is not a log


@dataclass
class Freed:
    files: int = 0
    file_bytes: int = 0
    work_area_bytes: int = 0
    jobs: int = 0

    @property
    def bytes(self) -> int:
        return self.file_bytes + self.work_area_bytes


class CleanupSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reconcile_s: float = Field(60.0, gt=0)
    tick_s: float = Field(5.0, gt=0)  # archive copies and deletions on storage elements
    # Work areas archived and removed at once. Removals wait on the filesystem's journal while
    # other components fsync (on a network filesystem, on the server): several at once overlap
    # the waits, but each thread more fights over the interpreter (bench.cleanup_io: a pool of
    # 8 costs twice the CPU of one thread on a quiet disk). With 100,000 emulated jobs
    # (bench.agent_scale), 1 worker fell behind production (247 jobs/s), 4 gave 264-281 jobs/s
    # and 8 gave 278-332 jobs/s for about 10% more of Cleanup's CPU.
    io_workers: int = Field(8, ge=1)


class Cleanup(Component):
    name = "Cleanup"
    Settings = CleanupSettings
    # A merge frees its inputs' files and work areas in its handler: a few merges per
    # transaction, so the rows are not held for long and progress shows steadily.
    batch_limit = 4
    tick_in_transaction = False  # storage I/O runs with no transaction open

    def setup(self) -> None:
        workers = self.settings.io_workers
        self.pool = ThreadPoolExecutor(workers, thread_name_prefix="cleanup-io") if workers > 1 else None
        self.layout = Layout(self.config)
        self.backlog: list[int] = []  # merges to clean, found stale by reconciliation
        self.uncleaned_before: set[int] = set()  # merges with uncleaned inputs at the previous pass
        self.custody = Custody(Elements(self.config.storage), self.config.agent.name,
                               self.config.workdir / "tmp" / "custody", self.log)

    def teardown(self) -> None:
        if self.pool:
            self.pool.shutdown(wait=True)

    def _each(self, fn: Callable[[T], int], items: Sequence[T]) -> int:
        """The sum of `fn` over `items`: in the pool if there is one."""
        return sum(self.pool.map(fn, items) if self.pool else map(fn, items))

    @handles("MergeAccepted")
    def on_merge_accepted(self, ctx: Context, payload: dict[str, Any]) -> None:
        self.clean_after(ctx, int(payload["merge_job_id"]))
        if self.config.storage.elements:
            self.tick_now = True  # replicas on elements: archive and delete them soon

    def tick(self, ctx: Context | None = None) -> None:
        """Clean what reconciliation found stale; archive merged replicas and delete the unmerged
        ones they make redundant, then clean the merges whose inputs that freed."""
        self.clean_backlog()
        if not self.config.storage.elements:
            return
        progress = self.custody.run(self.transaction)
        if not progress.deleted:
            return
        merges = {r.merge_job_id for r in progress.deleted if r.merge_job_id is not None}

        def record(c: Context) -> None:
            ids = [r.id for r in progress.deleted]
            catalog.set_state(c.conn, ids, replica_states.VERIFIED, replica_states.DELETED)
            catalog.set_state(c.conn, ids, replica_states.CORRUPT, replica_states.DELETED)
            for merge_job_id in sorted(merges):
                self.clean_after(c, merge_job_id)

        self.transaction(record)
        self.log.info("deleted %d replica(s) from storage elements (%d archive copies made)",
                      len(progress.deleted), progress.archived)

    def reconcile(self, ctx: Context) -> None:
        """Note the merges whose inputs were still uncleaned at the previous pass too (a
        `MergeAccepted` merely queued is not lost): the tick cleans each in a transaction of its
        own. Then void and free the outputs of lost work."""
        uncleaned = set(store.merges_with_uncleaned_inputs(ctx.conn, self.config.agent.name))
        queued = {int(p["merge_job_id"]) for p in self.service.queued(ctx.conn, self.name, "MergeAccepted")}
        self.backlog = sorted((uncleaned & self.uncleaned_before) - queued)
        self.uncleaned_before = uncleaned
        self.tick_now = bool(self.backlog)
        self.clean_void(ctx)

    def clean_backlog(self) -> None:
        """Clean the merges reconciliation found stale, one short transaction each: a long one
        would hold their rows from the other components."""
        while self.backlog:
            merge_job_id = self.backlog.pop(0)
            freed = self.transaction(lambda c, m=merge_job_id: self.clean_after(c, m))
            if freed.files or freed.jobs:  # inputs still on an element wait for the element pass
                self.log.warning("merge job %d: accepted, inputs were not cleaned (MergeAccepted lost?): cleaned",
                                 merge_job_id)

    def clean_after(self, ctx: Context, merge_job_id: int) -> Freed:
        """Free what the accepted merge `merge_job_id` leaves behind; what was freed."""
        inputs = store.merge_inputs(ctx.conn, merge_job_id, lock=True)
        # inputs with replicas on a storage element wait for the tick: it deletes those replicas
        # once the merged file (and its archive copy) is verified, then comes back here
        held = catalog.on_elements(ctx.conn, [f.id for f in inputs])
        ready = [f for f in inputs if f.state == file_states.MERGED and f.id not in held]
        freed = self.free(ctx, ready, file_states.MERGED,
                          {f.job_id for f in inputs} | {merge_job_id}, "cleaned after an accepted merge")
        if freed.files or freed.jobs or freed.bytes:  # else an earlier delivery did it all
            self.log.info("merge job %d: removed %d unmerged file(s) (%d bytes) and %d work area(s) (%d bytes); "
                          "%d bytes freed", merge_job_id, freed.files, freed.file_bytes, freed.jobs,
                          freed.work_area_bytes, freed.bytes)
        return freed

    def clean_void(self, ctx: Context) -> Freed:
        """Void the outputs of allocations that ended without a completion, and free them."""
        agent = self.config.agent.name
        voided = store.void_outputs_of_ended_allocations(ctx.conn, agent)
        if voided:
            self.log.warning("%d unmerged file(s) of allocations ended without a completion are void", voided)
        files = store.void_files(ctx.conn, agent)
        freed = self.free(ctx, files, file_states.VOID, {f.job_id for f in files},
                          "cleaned: its allocation ended without a completion, its outputs are void")
        if freed.files or freed.jobs:
            self.log.info("removed %d void file(s) (%d bytes) and %d work area(s) (%d bytes)",
                          freed.files, freed.file_bytes, freed.jobs, freed.work_area_bytes)
        return freed

    def free(self, ctx: Context, files: list[Any], state: str, job_ids: set[int], why: str) -> Freed:
        """Delete `files` (in `state`) from disk and mark them cleaned; then retire the work area of
        each of `job_ids` in success with no file still waiting for a merge."""
        freed = Freed()
        held = catalog.on_elements(ctx.conn, [f.id for f in files])  # deleted by the tick instead
        freed.file_bytes += self._each(remove_file, [Path(f.pfn) for f in files if f.id not in held])
        freed.files = store.set_file_states(ctx.conn, [f.id for f in files], state, file_states.CLEANED)
        # A job with another file still waiting for a merge keeps its work area until that one is merged.
        waiting = {f.job_id for f in store.files_of_jobs(ctx.conn, job_ids) if f.state in file_states.WAITING}
        jobs = [j for j in store.jobs(ctx.conn, job_ids) if j.state == states.SUCCESS and j.id not in waiting]
        freed.work_area_bytes += self._each(self.retire_work_area, jobs)
        freed.jobs = len(store.transition(ctx.conn, [j.id for j in jobs], states.CLEANED, why).ids)
        return freed

    def retire_work_area(self, job: Any) -> int:
        """Archive the job's logs (unless an archive is already there), remove its work area; bytes freed."""
        tree = WorkArea.read(Path(job.workdir))
        if tree is None:
            return 0
        archive = self.layout.log_archive(job.request_id, job.name)
        if not archive.is_file():
            write_archive(tree, archive)
        tree.remove()
        return tree.size


def remove_file(path: Path) -> int:
    """Delete a file; its size, or 0 if it was already gone."""
    try:
        size = path.stat().st_size
        path.unlink()
        return size
    except FileNotFoundError:
        return 0


@dataclass
class WorkArea:
    """A work area read once (one directory scan): its files with their stat, its directories.

    At hundreds of jobs a second, the scan, the archive and the removal are most of Cleanup's
    cost: each file is looked at once, and no user or group name is looked up for the archive."""

    root: Path
    files: list[tuple[Path, os.stat_result]]
    dirs: list[Path]  # deepest first, the root last

    @classmethod
    def read(cls, root: Path) -> WorkArea | None:
        if not root.is_dir():
            return None
        tree = cls(root, [], [])
        tree._scan(root)
        return tree

    def _scan(self, directory: Path) -> None:
        with contextlib.suppress(FileNotFoundError), os.scandir(directory) as entries:
            for entry in entries:
                path = Path(entry.path)
                if entry.is_dir(follow_symlinks=False):
                    self._scan(path)
                else:
                    with contextlib.suppress(FileNotFoundError):
                        self.files.append((path, entry.stat(follow_symlinks=False)))
        self.dirs.append(directory)

    @property
    def size(self) -> int:
        return sum(st.st_size for _path, st in self.files)

    def remove(self) -> None:
        for path, _st in self.files:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        try:
            for directory in self.dirs:
                with contextlib.suppress(FileNotFoundError):
                    directory.rmdir()
        except OSError:  # something appeared meanwhile (a late log line): remove whatever is there
            shutil.rmtree(self.root, ignore_errors=True)


def write_archive(tree: WorkArea, archive: Path) -> None:
    """The work area's logs as <job name>/attempt-N/... in a .tar.gz, written whole or not at all."""
    archive.parent.mkdir(parents=True, exist_ok=True)
    part = archive.with_name(archive.name + ".part")
    with tarfile.open(part, "w:gz", compresslevel=6) as tar:
        for path, st in sorted(tree.files):
            if path.name.endswith(DATA_SUFFIXES) or not stat.S_ISREG(st.st_mode):
                continue
            member = tarfile.TarInfo(str(Path(tree.root.name) / path.relative_to(tree.root)))
            member.size, member.mtime, member.mode = st.st_size, int(st.st_mtime), stat.S_IMODE(st.st_mode)
            try:
                with path.open("rb") as handle:
                    tar.addfile(member, handle)
            except FileNotFoundError:
                continue
    os.replace(part, archive)
