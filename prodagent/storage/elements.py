"""The agent's storage elements by name (opened once), and the read-back check of a job's
staged-out outputs that the JobTracker makes before it believes a job's success.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from prodagent.payload.report import JobReport
from prodagent.storage.base import ChecksumMismatch, StorageElement, StorageError
from prodagent.storage.registry import open_element
from prodagent.storage.settings import StorageSection

log = logging.getLogger("prodagent.storage")


@dataclass(frozen=True)
class Check:
    """The outcome of reading a job's replicas back: ok, corrupt (redo the job), or unknown now."""

    ok: bool
    corrupt: bool = False
    reason: str = ""


class Elements:
    def __init__(self, storage: StorageSection) -> None:
        self.storage = storage
        self._open: dict[str, StorageElement] = {}

    def get(self, name: str) -> StorageElement:
        if name not in self._open:
            if name not in self.storage.elements:
                raise StorageError(f"no storage element named {name!r} is configured")
            self._open[name] = open_element(self.storage.elements[name], name)
        return self._open[name]

    def check_outputs(self, report: JobReport) -> Check:
        """Read each staged-out output back: its adler32 must be the one the job reported.

        A corrupt replica is deleted (the job's retry writes it again)."""
        for out in report.outputs:
            if out.element is None:
                continue
            try:
                element = self.get(out.element)
                lfn = element.lfn_of(out.path)
                element.verify(lfn, out.adler32)
            except ChecksumMismatch as exc:
                try:
                    element.delete(lfn)
                except StorageError as gone:
                    log.warning("corrupt replica %s not deleted: %s", out.path, gone)
                return Check(False, corrupt=True, reason=f"replica corrupt on {out.element}: {exc}")
            except FileNotFoundError as exc:
                return Check(False, corrupt=True, reason=f"replica missing on {out.element}: {exc}")
            except (StorageError, ValueError) as exc:
                return Check(False, reason=f"cannot check replica {out.path} now: {exc}")
        return Check(True)
