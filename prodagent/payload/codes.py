"""Every exit status and error code of the payload, in one place.

Three families:

* exit statuses of the transformations (`generate`, `merge`), small numbers a shell can see;
* error codes the job wrapper puts in `report.json` when the payload's own exit status is not
  the whole truth (exit 0 without output, no "End of Job" line, a limit hit...), in the 603xx
  range so they never collide with a payload's exit status;
* the exit status the wrapper itself ends with for each 603xx code, because a process exit
  status cannot exceed 255 and batch systems only see that.
"""

from __future__ import annotations

# --- generate.py --------------------------------------------------------------------------
OK = 0
GEN_BAD_ARGS = 2
GEN_INIT_FAILED = 3
GEN_FAILED = 4
GEN_ENTRY_MISMATCH = 5

# --- merge.py -----------------------------------------------------------------------------
MERGE_BAD_ARGS = 2
MERGE_BAD_INPUT = 3
MERGE_COUNT_MISMATCH = 4
MERGE_DUPLICATES = 5

# --- failure injection ----------------------------------------------------------------------
#: exit status of an injected failure when no code is given
DEFAULT_FAIL_CODE = 66

# --- job wrapper (report.json error_code) -----------------------------------------------------
WRAPPER_ERROR = 60300  #: the wrapper itself raised; see job.log
BAD_SPEC = 60301  #: job.json missing or invalid
MISSING_OUTPUT = 60302  #: exit 0 but the output file does not exist
EMPTY_OUTPUT = 60303  #: exit 0 but the output has 0 bytes or 0 entries
NO_END_OF_JOB = 60304  #: exit 0 but no "End of Job" line in the log
EVENT_COUNT_MISMATCH = 60305  #: output entries differ from what the job was asked for
UNREADABLE_OUTPUT = 60306  #: the output exists but is not a readable ROOT file with the tree
NUMBERING_MISMATCH = 60307  #: output run / first event differ from the spec
EXEC_FAILED = 60308  #: the transformation could not be started
MEMORY_LIMIT = 60310  #: killed by the wrapper: resident memory above the spec's limit
TIME_LIMIT = 60311  #: killed by the wrapper: wall time above the spec's limit
TERMINATED = 60312  #: the wrapper was told to stop (SIGTERM/SIGINT) and killed the payload
STAGEOUT_FAILED = 60313  #: the output could not be put on the storage element (retries used up)
REPLICA_CORRUPT = 60314  #: the agent read the staged-out replica back: its adler32 differs

DESCRIPTIONS: dict[int, str] = {
    WRAPPER_ERROR: "internal error in the job wrapper",
    BAD_SPEC: "job spec missing or invalid",
    MISSING_OUTPUT: "output file missing",
    EMPTY_OUTPUT: "output file empty",
    NO_END_OF_JOB: "no 'End of Job' line in the log",
    EVENT_COUNT_MISMATCH: "output event count differs from the expected count",
    UNREADABLE_OUTPUT: "output file unreadable",
    NUMBERING_MISMATCH: "output run or event numbering differs from the spec",
    EXEC_FAILED: "transformation could not be started",
    MEMORY_LIMIT: "memory limit exceeded",
    TIME_LIMIT: "wall time limit exceeded",
    TERMINATED: "terminated by a signal to the wrapper",
    STAGEOUT_FAILED: "stage-out to the storage element failed",
    REPLICA_CORRUPT: "staged-out replica corrupt on the storage element",
}

#: the wrapper's exit status for each 603xx code (80 + last two digits)
WRAPPER_EXIT_STATUS: dict[int, int] = {code: 80 + code % 100 for code in DESCRIPTIONS}


def wrapper_exit_status(exit_code: int, error_code: int | None) -> int:
    """The status runjob exits with: 0 on success, the payload's own non-zero status, or the
    small status standing for the 603xx code when the payload said 0 but the job failed."""
    if error_code is None:
        return OK
    if exit_code != OK and error_code not in WRAPPER_EXIT_STATUS:
        return min(max(exit_code, 1), 255)
    return WRAPPER_EXIT_STATUS.get(error_code, 1)
