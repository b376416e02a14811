"""The in-flight journal: which messages a consumer process is handling right now.

The fast consume path claims, handles and acknowledges a batch in one transaction, so a
consumer that dies mid-batch leaves no trace in the database (its transaction rolls back and
the messages simply come back). To still count such deliveries, and dead-letter a message that
keeps killing its consumer, each process writes the ids it is about to handle to a small file
beside its pid file. The kernel keeps the file when the process is killed; the next process of
the component on this host charges those messages one delivery each.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import psutil


class InflightJournal:
    def __init__(self, directory: Path, component: str) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.component = component
        self.path = directory / f"{component}.{os.getpid()}.inflight"

    def write(self, ids: Sequence[int]) -> None:
        self.path.write_text(" ".join(map(str, ids)))

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)

    def orphans(self) -> list[tuple[Path, list[int]]]:
        """Journals left by dead processes of this component, with the ids they held."""
        found = []
        for path in self.directory.glob(f"{self.component}.*.inflight"):
            try:
                pid = int(path.name.split(".")[-2])
                text = path.read_text()
                written = path.stat().st_mtime
            except (ValueError, OSError):
                continue
            if pid == os.getpid() or _alive_since(pid, written):
                continue
            found.append((path, [int(x) for x in text.split()]))
        return found


def _alive_since(pid: int, moment: float) -> bool:
    try:
        return psutil.Process(pid).create_time() <= moment + 1.0
    except psutil.Error:
        return False
