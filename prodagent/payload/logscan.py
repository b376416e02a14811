"""Reads a job's log for what the exit status cannot say: the "End of Job" line, progress,
and the lines that explain a failure.

The log is read line by line, so a payload that prints a lot costs time, not memory.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

END_OF_JOB = re.compile(r"^\s*End of Job: (\d+) events\b")
PROCESSED = re.compile(r"^\s*Processed (\d+)/(\d+) events\b")

#: lines worth quoting in a failure reason; "PYTHIA Warning" is normal and is not here
ERROR_PATTERNS = re.compile(
    r"A FATAL ERROR APPEARED|Cannot Allocate \d+ Bytes|MemoryError|Segmentation fault"
    r"|PYTHIA (?:Error|Abort)|%MSG-e|Merge refused|Generation failed|Output check failed"
    r"|init failed|Traceback \(most recent call last\)"
)
MAX_ERROR_LINES = 5


@dataclass
class LogSummary:
    end_of_job_events: int | None = None  # from the last "End of Job: N events" line
    last_processed: int | None = None  # from the last "Processed n/N events" line
    error_lines: list[str] = field(default_factory=list)

    @property
    def end_of_job_seen(self) -> bool:
        return self.end_of_job_events is not None


def scan_log(path: str | os.PathLike[str]) -> LogSummary:
    """Summarise a log; a missing log gives an empty summary."""
    summary = LogSummary()
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                _take(summary, line)
    except FileNotFoundError:
        pass
    return summary


def _take(summary: LogSummary, line: str) -> None:
    if match := END_OF_JOB.match(line):
        summary.end_of_job_events = int(match.group(1))
    elif match := PROCESSED.match(line):
        summary.last_processed = int(match.group(1))
    elif len(summary.error_lines) < MAX_ERROR_LINES and ERROR_PATTERNS.search(line):
        summary.error_lines.append(line.strip()[:300])
