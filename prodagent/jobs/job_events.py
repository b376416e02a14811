"""Job state changes as ProdManager's `JobEvent`s: what ProdMgrInterface pushes so the web
monitor shows each job's transitions, codes, resources and the log tail of each failed attempt.

A failed attempt's log is read from its attempt directory, or from the job's log archive when
Cleanup has already archived it (`logs/archive/<request>/<job>.tar.gz`).
"""

from __future__ import annotations

import re
import tarfile
from pathlib import Path
from typing import Any

from prodagent.jobs import states
from prodagent.jobs.errors import read_log_tail
from prodagent.jobs.layout import Layout
from prodagent.payload.report import LOG_NAME, read_report
from prodmanager.models import JobEvent, StepOutcome
from prodmanager.text import one_line

LOG_LINES = 200  # lines of a failed attempt's log pushed
LINE_CHARS = 1000
_DECIDED = re.compile(r"^([A-Za-z0-9_.-]{1,64}):")  # ErrorHandler's reasons start with the class
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def to_event(row: Any, layout: Layout) -> JobEvent:
    """A transition row of `store.transitions_since` as a JobEvent."""
    reason = one_line(row.reason or "", 500)
    failed = row.to_state in states.FAILED
    decided = row.to_state in (states.COOLOFF, states.PAUSED, states.EXHAUSTED)
    found = _DECIDED.match(reason) if decided else None
    # The job row holds the latest attempt's codes and usage: sent with that attempt's end only.
    ended = (failed or row.to_state == states.SUCCESS) and row.retry == row.job_retry
    return JobEvent(
        seq=int(row.id),
        allocation_id=int(row.pm_id),
        job_name=row.name,
        retry=int(row.retry),
        from_state=row.from_state,
        to_state=row.to_state,
        at=float(row.at),
        reason=reason,
        site=row.site,
        exit_code=row.exit_code if (failed or decided) and row.retry == row.job_retry else None,
        error_class=found.group(1) if found else None,
        memory_mb=row.memory_mb,
        wall_s=row.wall_s if ended else None,
        cpu_s=row.cpu_s if ended else None,
        max_rss_mb=row.max_rss_mb if ended else None,
        log_tail=log_lines(attempt_log(row, layout)) if failed else [],
        steps=attempt_steps(row) if ended else [],
    )


def attempt_steps(row: Any) -> list[StepOutcome]:
    """How each step of a multi-step attempt ended, from its report (none for a single step)."""
    try:
        report = read_report(Layout.attempt_dir(row.workdir, row.retry))
    except ValueError:
        return []
    steps = report.steps if report else []
    return [StepOutcome(name=s.name, status=s.status, reused=s.reused) for s in steps]


def attempt_log(row: Any, layout: Layout) -> str:
    path = Layout.attempt_dir(row.workdir, row.retry) / LOG_NAME
    if path.is_file():
        return read_log_tail(path)
    archive = layout.log_archive(row.request_id, row.name)
    member = f"{Path(row.workdir).name}/attempt-{row.retry}/{LOG_NAME}"
    try:
        with tarfile.open(archive, "r:gz") as tar:
            fh = tar.extractfile(member)
            return fh.read()[-65536:].decode("utf-8", "replace") if fh else ""
    except (OSError, KeyError, tarfile.TarError):
        return ""


def log_lines(text: str) -> list[str]:
    """The last lines of a log, each one line of printable text (the door refuses controls)."""
    lines = text.replace("\t", "    ").splitlines()[-LOG_LINES:]
    return [_CONTROL.sub("\ufffd", line)[:LINE_CHARS] for line in lines]
