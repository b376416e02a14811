"""Custody of replicas on storage elements after a merge: archive copies, then deletions.

Run by Cleanup's tick with no transaction open: each step reads what to do in one short
transaction, does the storage I/O, and records the outcome in another (idempotently: a crash in
between repeats a harmless copy or delete).

* archive: each verified merged replica on an element is copied to the archive element (read to
  a local temporary file, put with the catalog's adler32 as the expected source checksum, so the
  copy is verified end to end) and recorded `verified` there;
* delete: unmerged replicas on elements are deleted once their file is void, or merged into a
  file whose merged replica is verified (and, with an archive element, whose archive copy is).
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from prodagent.storage import catalog
from prodagent.storage import replica_states as rs
from prodagent.storage.base import ChecksumMismatch, StorageError
from prodagent.storage.elements import Elements

T = TypeVar("T")
Transaction = Callable[[Callable[[Any], T]], T]


@dataclass
class Progress:
    archived: int = 0
    deleted: list[Any] = field(default_factory=list)  # replica rows deleted from their element
    problems: int = 0


class Custody:
    def __init__(self, elements: Elements, agent: str, scratch: Path, log: logging.Logger) -> None:
        self.elements = elements
        self.agent = agent
        self.scratch = scratch
        self.log = log

    def run(self, transaction: Transaction) -> Progress:
        progress = Progress()
        archive = self.elements.storage.archive
        if archive is not None:
            for row in transaction(lambda c: catalog.to_archive(c.conn, self.agent, archive)):
                self.archive(transaction, row, archive, progress)
        rows = transaction(lambda c: catalog.to_delete(c.conn, self.agent, archive))
        for row in rows:
            try:
                element = self.elements.get(row.element)
                element.delete(element.lfn_of(row.pfn))
            except (StorageError, ValueError, OSError) as exc:
                self.log.warning("replica %s not deleted now: %s", row.pfn, exc)
                progress.problems += 1
                continue
            progress.deleted.append(row)
        return progress

    def archive(self, transaction: Transaction, row: Any, archive: str, progress: Progress) -> None:
        source = self.elements.get(row.element)
        target = self.elements.get(archive)
        self.scratch.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=self.scratch) as tmp:
            local = Path(tmp) / "copy"
            try:
                lfn = source.lfn_of(row.pfn)
                source.get(lfn, local)
                stat = target.put(local, lfn, source_adler32=row.adler32)
            except ChecksumMismatch as exc:
                self.log.error("merged replica %s does not match the catalog (%s): kept, marked corrupt; "
                               "its inputs are kept too", row.pfn, exc)
                transaction(lambda c: catalog.set_state(c.conn, [row.id], rs.VERIFIED, rs.CORRUPT))
                progress.problems += 1
                return
            except (StorageError, ValueError, OSError) as exc:
                self.log.warning("archive copy of %s not made now: %s", row.pfn, exc)
                progress.problems += 1
                return
        transaction(lambda c: catalog.record(c.conn, [{
            "file_id": row.file_id, "element": archive, "pfn": stat.pfn, "role": rs.ARCHIVE,
            "size": stat.size, "adler32": stat.adler32}]))
        progress.archived += 1
        self.log.info("archived %s to %s as %s (adler32 %s verified)", row.lfn, archive, stat.pfn, stat.adler32)
