"""The JobEmulator's state: one SQLite table of jobs, shared by every agent process.

Each row holds what was drawn at submission (start and end times, node, outcome), so a job's
state at any moment is computed from the clock, with no process per job. Bulk statements take
the job ids as one JSON array (`json_each`), so a query over 100,000 jobs is one statement.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    job_id      TEXT PRIMARY KEY,
    seq         INTEGER NOT NULL,
    attempt     INTEGER NOT NULL,
    workdir     TEXT NOT NULL,
    node        TEXT NOT NULL,
    submitted   REAL NOT NULL,
    start       REAL NOT NULL,
    end         REAL NOT NULL,
    exit_code   INTEGER NOT NULL,
    error_class TEXT,
    lost        INTEGER NOT NULL,
    log         TEXT,
    killed      REAL,
    reported    INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS jobs_end ON jobs (end);
CREATE INDEX IF NOT EXISTS jobs_unreported ON jobs (end) WHERE reported = 0;
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""

COLUMNS = (
    "job_id",
    "seq",
    "attempt",
    "workdir",
    "node",
    "submitted",
    "start",
    "end",
    "exit_code",
    "error_class",
    "lost",
    "log",
    "killed",
    "reported",
)


class JobRow(NamedTuple):  # a tuple: 100,000 of them a cycle cost a third of a dataclass's time
    job_id: str
    seq: int
    attempt: int
    workdir: str
    node: str
    submitted: float
    start: float
    end: float
    exit_code: int
    error_class: str | None
    lost: int
    log: str | None
    killed: float | None
    reported: int


class EmulatorDB:
    """Bulk operations on the jobs table. One connection per plugin instance."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(path, timeout=60, isolation_level=None)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.executescript(SCHEMA)

    def close(self) -> None:
        self.conn.close()

    def rows(self, job_ids: Iterable[str]) -> Iterator[JobRow]:
        cur = self.conn.execute(
            f"SELECT {', '.join(COLUMNS)} FROM jobs WHERE job_id IN "
            "(SELECT value FROM json_each(?))",
            (json.dumps(list(job_ids)),),
        )
        for values in cur:
            yield JobRow._make(values)

    def insert(self, rows: Sequence[JobRow]) -> None:
        marks = ", ".join("?" * len(COLUMNS))
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            self.conn.executemany(
                f"INSERT OR REPLACE INTO jobs ({', '.join(COLUMNS)}) VALUES ({marks})",
                [tuple(getattr(r, c) for c in COLUMNS) for r in rows],
            )
            self.conn.execute("COMMIT")
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise

    def reserve_seq(self, count: int) -> int:
        """Reserve `count` batch ids; returns the first."""
        cur = self.conn.execute(
            "INSERT INTO counters (name, value) VALUES ('seq', ?) "
            "ON CONFLICT (name) DO UPDATE SET value = value + excluded.value RETURNING value",
            (count,),
        )
        return int(cur.fetchone()[0]) - count + 1

    def kill(self, job_ids: Iterable[str], now: float) -> None:
        self.conn.execute(
            "UPDATE jobs SET killed = ? WHERE job_id IN (SELECT value FROM json_each(?)) "
            "AND killed IS NULL AND end > ?",
            (now, json.dumps(list(job_ids)), now),
        )

    def unreported(self, now: float, limit: int) -> list[JobRow]:
        """Jobs ended by `now` whose results are not written yet, oldest end first."""
        cur = self.conn.execute(
            f"SELECT {', '.join(COLUMNS)} FROM jobs WHERE reported = 0 AND end <= ? ORDER BY end LIMIT ?",
            (now, limit),
        )
        return [JobRow._make(values) for values in cur]

    def pending(self) -> int:
        """Jobs whose results are still to be written, now or when they end."""
        return int(self.conn.execute("SELECT count(*) FROM jobs WHERE reported = 0").fetchone()[0])

    def mark_reported(self, job_ids: Sequence[str]) -> None:
        if job_ids:
            self.conn.execute(
                "UPDATE jobs SET reported = 1 WHERE job_id IN (SELECT value FROM json_each(?))",
                (json.dumps(list(job_ids)),),
            )

    def counts(self, now: float) -> tuple[int, int]:
        """(running, queued) among jobs not yet ended and not killed."""
        running, queued = self.conn.execute(
            "SELECT coalesce(sum(start <= ?1), 0), coalesce(sum(start > ?1), 0) FROM jobs "
            "WHERE end > ?1 AND killed IS NULL",
            (now,),
        ).fetchone()
        return int(running), int(queued)
